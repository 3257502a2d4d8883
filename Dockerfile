# syntax=docker/dockerfile:1
# One static binary for every role: the service's command picks it
# (`cloudimages api`, `worker` or `nodeagent`). See docker-compose.yml.
# Two runtime images: the default (last stage) is distroless, for the API
# and the workers; the `agent` target is a small Debian with the tools the
# node agent runs (qemu-img to inspect and convert, xz, zstd and bzip2).

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

# The node agent: docker build --target agent. It runs as the same uid
# as the distroless image's nonroot (65532), so the credential that the
# one-shot node-token (distroless) writes into a volume is the agent's.
FROM debian:bookworm-slim AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-utils xz-utils zstd bzip2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /out/cloudimages /usr/local/bin/cloudimages
COPY --from=build --chown=65532:65532 /out/pools /var/lib/cloudimages
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/cloudimages"]
CMD ["nodeagent"]

# The API, the workers and node-token: the default target.
FROM gcr.io/distroless/static-debian12:nonroot AS server
COPY --from=build /out/cloudimages /usr/local/bin/cloudimages
COPY --from=build --chown=65532:65532 /out/pools /var/lib/cloudimages
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/cloudimages"]
CMD ["--help"]
