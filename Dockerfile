# syntax=docker/dockerfile:1
# One static binary for every role: the service's command picks it
# (`cloudimages api`, `worker` or `nodeagent`). See docker-compose.yml.

# The Go of go.mod's go line (e2e/compose_test.go checks they agree).
ARG GO_VERSION=1.26.8
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cloudimages ./cmd/cloudimages
# The pool mount points (and the agent's credential's), owned by the runtime
# user: Docker gives a new named volume the ownership of the directory it is mounted on.
RUN mkdir -p /out/pools/local /out/pools/nfs-01 /out/pools/token

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cloudimages /usr/local/bin/cloudimages
COPY --from=build --chown=65532:65532 /out/pools /var/lib/cloudimages
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/cloudimages"]
CMD ["--help"]
