package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// The core of the tus 1.0 resumable upload protocol (https://tus.io),
// with the creation and termination extensions, on /v1/uploads. It is
// written here rather than taken from tusd: an upload's state already has
// owners — the image record and its workflow in the store and Temporal,
// the bytes and their offset on the node agent that receives them — so
// the API keeps none of its own, needs no lock shared between replicas
// (the agent lets one PATCH write at a time and checks every offset), and
// go.mod gains nothing.
//
// An upload's id is its image's id. POST creates the image (source
// "upload") and starts its UploadImageWorkflow, which picks a node and
// creates the node-side upload; PATCH streams the body through to that
// node, never holding more than a buffer of it; HEAD asks the node for its
// offset. Every route takes the same bearer token as the rest of /v1/.

const (
	tusVersion    = "1.0.0"
	tusExtensions = "creation,termination"
	// nodeWait is how long a PATCH waits for the upload's workflow to have
	// created the node-side upload (a node is picked and asked first).
	nodeWait = 30 * time.Second
	// offsetMedia is the type of a PATCH body.
	offsetMedia = "application/offset+octet-stream"
)

// uploadRoutes registers the tus routes on the /v1 group.
func (s *Server) uploadRoutes(v1 *echo.Group) {
	g := v1.Group("/uploads", s.tusHeaders)
	g.OPTIONS("", s.uploadOptions)
	g.POST("", s.createUpload)
	g.HEAD("/:id", s.headUpload)
	g.PATCH("/:id", s.patchUpload)
	g.DELETE("/:id", s.deleteUpload)
}

// tusHeaders marks every answer with the protocol's version and refuses a
// request (but OPTIONS, which discovers it) that speaks another one.
func (s *Server) tusHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Tus-Resumable", tusVersion)
		h.Set("Cache-Control", "no-store")
		if c.Request().Method != http.MethodOptions && c.Request().Header.Get("Tus-Resumable") != tusVersion {
			h.Set("Tus-Version", tusVersion)
			return tusFail(c, http.StatusPreconditionFailed, fault.New(fault.InvalidRequest,
				"this is a tus %s endpoint: send the header Tus-Resumable: %s (got %q)", tusVersion, tusVersion, c.Request().Header.Get("Tus-Resumable")))
		}
		return next(c)
	}
}

// tusFail answers an error with a status of the protocol's own (410, 412,
// 423…) that the contract's codes do not map to.
func tusFail(c echo.Context, status int, fe *fault.Error) error {
	if c.Request().Method == http.MethodHead {
		return c.NoContent(status)
	}
	return c.JSON(status, ErrorBody{Error: ErrorDetail{Code: fe.Code, Message: fe.Message}})
}

func (s *Server) uploadOptions(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Tus-Version", tusVersion)
	h.Set("Tus-Extension", tusExtensions)
	h.Set("Tus-Max-Size", strconv.FormatInt(source.MaxUploadSize, 10))
	return c.NoContent(http.StatusNoContent)
}

// createUpload is the creation extension: Upload-Length and the metadata
// pool_id, name (or filename), optional checksum and format. It answers
// 201 with the Location of the upload (relative) and the Image as body.
func (s *Server) createUpload(c echo.Context) error {
	ctx := c.Request().Context()
	req := c.Request()
	if req.Header.Get("Upload-Defer-Length") != "" {
		return apiErr(fault.InvalidRequest, "Upload-Defer-Length is not supported: give Upload-Length, the file's size in bytes")
	}
	length, err := strconv.ParseInt(req.Header.Get("Upload-Length"), 10, 64)
	if err != nil {
		return apiErr(fault.InvalidRequest, "Upload-Length %q: give the file's size in bytes", req.Header.Get("Upload-Length"))
	}
	meta, err := parseMetadata(req.Header.Get("Upload-Metadata"))
	if err != nil {
		return err
	}
	name := meta["name"]
	if name == "" {
		name = meta["filename"]
	}
	id := uuid.NewString()
	src, err := source.Upload(source.UploadRequest{PoolID: meta["pool_id"], Name: name, Checksum: meta["checksum"],
		Format: meta["format"], SizeBytes: length}, id)
	if err != nil {
		if fault.CodeOf(err) == fault.TooLarge {
			return tusFail(c, http.StatusRequestEntityTooLarge, fault.From(err))
		}
		return err
	}
	if err := checkID("pool_id", meta["pool_id"]); err != nil {
		return err
	}
	pool, err := s.pool(c, meta["pool_id"])
	if err != nil {
		return err
	}
	if err := s.checkNodes(ctx, pool, ""); err != nil {
		return err
	}
	img := &store.Image{ID: id, PoolID: pool.ID, Name: src.Name, SizeBytes: src.SizeBytes, Checksum: src.Checksum,
		Unverified: src.Unverified, FileName: source.FileNameIn(src.FileName, pool.ImageFormat), SourceKey: src.SourceKey,
		Source: store.SourceUpload, DeclaredFormat: src.Format, Status: store.StatusPending, WorkflowID: contract.WorkflowID(id)}
	got, _, err := s.store.CreateImage(ctx, img)
	switch {
	case errors.Is(err, store.ErrFileNameTaken):
		return apiErr(fault.Conflict, "%v: give the upload another name", err)
	case err != nil:
		return err
	}
	in := contract.UploadInput{ImageID: got.ID, PoolID: got.PoolID, Name: got.Name, FileName: got.FileName,
		Checksum: got.Checksum, Format: src.Format, SizeBytes: got.SizeBytes, TTL: s.opts.UploadTTL}
	if err := s.startWorkflow(ctx, got, contract.UploadWorkflowType, in); err != nil {
		s.dropUnstarted(got)
		return err
	}
	s.log.Info("upload created", "image_id", got.ID, "pool_id", got.PoolID, "file_name", got.FileName, "size_bytes", got.SizeBytes)
	c.Response().Header().Set(echo.HeaderLocation, "/v1/uploads/"+got.ID)
	c.Response().Header().Set("Upload-Expires", time.Now().Add(s.opts.UploadTTL).UTC().Format(http.TimeFormat))
	return c.JSON(http.StatusCreated, viewImage(got))
}

// parseMetadata reads Upload-Metadata: comma-separated "key base64value"
// pairs (a key alone has an empty value).
func parseMetadata(header string) (map[string]string, error) {
	meta := map[string]string{}
	for _, pair := range strings.Split(header, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		key, enc, _ := strings.Cut(pair, " ")
		val, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if err != nil {
			return nil, apiErr(fault.InvalidRequest, "Upload-Metadata: the value of %q is not base64: %v", key, err)
		}
		meta[key] = string(val)
	}
	return meta, nil
}

// upload returns the image of an upload; any other image is not one.
func (s *Server) upload(ctx context.Context, id string) (store.Image, error) {
	img, err := s.store.Image(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && img.Source != store.SourceUpload) {
		return img, apiErr(fault.NotFound, "no upload %q: create one with POST /v1/uploads", id)
	}
	return img, err
}

// headUpload answers the upload's offset: the node's, while it receives;
// all of it once the node has every byte; 410 once it failed or was
// cancelled (a client then starts a new upload).
func (s *Server) headUpload(c echo.Context) error {
	ctx := c.Request().Context()
	img, err := s.upload(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Upload-Length", strconv.FormatInt(img.SizeBytes, 10))
	var offset int64
	switch img.Status {
	case store.StatusPending:
	case store.StatusDownloading:
		u, err := s.nodeUpload(ctx, img)
		if err != nil {
			return err
		}
		offset = u.Offset
	case store.StatusFailed, store.StatusCancelled:
		return tusFail(c, http.StatusGone, gone(img))
	default: // VERIFYING, CONVERTING, READY: the node has every byte
		offset = img.SizeBytes
	}
	h.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	return c.NoContent(http.StatusOK)
}

func gone(img store.Image) *fault.Error {
	if img.ErrorCode != "" {
		return fault.New(img.ErrorCode, "upload %s is %s: %s", img.ID, img.Status, img.ErrorMessage)
	}
	return fault.New(fault.Cancelled, "upload %s is %s: upload the file again", img.ID, img.Status)
}

// patchUpload streams the body to the node that receives the upload, at
// Upload-Offset: 204 with the new Upload-Offset, 409 when the offset is
// not the upload's.
func (s *Server) patchUpload(c echo.Context) error {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != offsetMedia {
		return tusFail(c, http.StatusUnsupportedMediaType, fault.New(fault.UnsupportedMediaType, "a PATCH body is Content-Type: %s, not %q", offsetMedia, ct))
	}
	offset, err := strconv.ParseInt(req.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || offset < 0 {
		return apiErr(fault.InvalidRequest, "Upload-Offset %q: give the offset the bytes go at (HEAD tells the upload's)", req.Header.Get("Upload-Offset"))
	}
	img, err := s.waitForNode(c, c.Param("id"))
	if err != nil {
		return err
	}
	switch img.Status {
	case store.StatusDownloading:
	case store.StatusFailed, store.StatusCancelled:
		return tusFail(c, http.StatusGone, gone(img))
	default:
		if offset == img.SizeBytes && req.ContentLength == 0 {
			c.Response().Header().Set("Upload-Offset", strconv.FormatInt(offset, 10))
			return c.NoContent(http.StatusNoContent)
		}
		return apiErr(fault.Conflict, "upload %s has all its %d bytes (it is %s): nothing more goes at offset %d", img.ID, img.SizeBytes, img.Status, offset)
	}
	// The body may take long: the node ends one that stalls, not the
	// server's read timeout.
	_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Time{})
	agent, err := s.agentFor(c.Request().Context(), img, http.MethodPatch)
	if err != nil {
		return err
	}
	s.metrics.uploadsActive.Inc()
	defer s.metrics.uploadsActive.Dec()
	if agent.CanRelay() && req.ContentLength > 0 && req.ProtoMajor == 1 && s.relayPatch(c, agent, img, offset) {
		return nil
	}
	body := &countedBody{r: req.Body}
	u, err := agent.WriteUpload(req.Context(), img.ID, offset, bigCopies{body}, req.ContentLength)
	s.metrics.uploadBytes.Add(float64(body.n))
	s.log.Debug("upload body streamed", "image_id", img.ID, "node_id", img.NodeID, "offset", offset, "bytes", body.n, "error", err)
	return s.patchAnswer(c, u, err)
}

// relayPatch takes the PATCH's connection over, so that the kernel moves
// the body from the uploader's socket to the agent's
// (agentclient.RelayUpload), and answers on it. It returns false, having
// done nothing, when the server is shutting down or the connection cannot
// be taken over: the body is then streamed, and http.Server.Shutdown
// waits for it. A relay still running when the shutdown times out is cut:
// the node keeps what reached it, and the uploader, answered 503, resumes
// from there.
func (s *Server) relayPatch(c echo.Context, agent *agentclient.Client, img store.Image, offset int64) bool {
	if !s.relays.begin() {
		return false
	}
	cut := false
	defer func() { s.relays.end(cut) }() // after raw.close: the answer is sent
	raw, head, err := hijackBody(c)
	if err != nil {
		return false
	}
	defer raw.close()
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	defer context.AfterFunc(s.relays.cut, cancel)()
	u, n, err := agent.RelayUpload(ctx, img.ID, offset, head, raw.conn, c.Request().ContentLength)
	cut = err != nil && s.relays.cut.Err() != nil
	s.metrics.uploadBytes.Add(float64(n))
	s.log.Debug("upload body relayed", "image_id", img.ID, "node_id", img.NodeID, "offset", offset, "bytes", n, "error", err, "cut", cut)
	if cut {
		s.log.Warn("upload PATCH cut by the shutdown timeout", "image_id", img.ID, "node_id", img.NodeID, "offset", offset, "bytes", n)
		c.Response().Header().Set(echo.HeaderRetryAfter, "1")
		_ = tusFail(c, http.StatusServiceUnavailable, fault.Retryable(fault.Cancelled,
			"the API is shutting down and stopped this PATCH after %d bytes of its body: the node kept what reached it; ask HEAD for the upload's offset and send the rest from there", n))
		return true
	}
	if err := s.patchAnswer(c, u, err); err != nil {
		c.Error(err)
	}
	return true
}

// patchAnswer answers a PATCH once the node has answered the body: 204
// with the node's offset, or the node's refusal.
func (s *Server) patchAnswer(c echo.Context, u agentclient.Upload, err error) error {
	if err != nil {
		fe, ok := fault.As(err)
		switch {
		case ok && fe.Code == fault.Conflict && fe.Retryable:
			return tusFail(c, http.StatusLocked, fe)
		case ok && !fe.Retryable && fault.HTTPStatus(fe.Code) >= 500:
			// The bytes were refused (not a disk image, …): the client's
			// doing, and no retry helps; the upload has failed.
			return tusFail(c, http.StatusUnprocessableEntity, fe)
		}
		return err
	}
	c.Response().Header().Set("Upload-Offset", strconv.FormatInt(u.Offset, 10))
	return c.NoContent(http.StatusNoContent)
}

// waitForNode returns the upload's image once its workflow has created the
// node-side upload (or the upload has ended), waiting up to nodeWait.
func (s *Server) waitForNode(c echo.Context, id string) (store.Image, error) {
	ctx := c.Request().Context()
	deadline := time.Now().Add(nodeWait)
	// The node usually has the upload within a tenth of a second of its
	// creation, while the uploader waits: look again often for a second,
	// then less often.
	often := time.Now().Add(time.Second)
	for waited := false; ; waited = true {
		img, err := s.upload(ctx, id)
		if err != nil || img.Status != store.StatusPending {
			return img, err
		}
		if !waited {
			s.log.Debug("upload PATCH waits for its node", "image_id", id, "pool_id", img.PoolID)
		}
		if time.Now().After(deadline) {
			c.Response().Header().Set(echo.HeaderRetryAfter, "5")
			return img, &fault.Error{Code: fault.NoNodeAvailable, Retryable: true, Message: fmt.Sprintf(
				"upload %s has no node to receive it yet (waited %s): is a worker running (cloudimages worker), and a node agent of pool %s? Try again later", id, nodeWait, img.PoolID)}
		}
		wait := 200 * time.Millisecond
		if time.Now().Before(often) {
			wait = 20 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return img, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// nodeUpload asks the node that receives an upload where it stands.
func (s *Server) nodeUpload(ctx context.Context, img store.Image) (agentclient.Upload, error) {
	agent, err := s.agentFor(ctx, img, http.MethodGet)
	if err != nil {
		return agentclient.Upload{}, err
	}
	return agent.Upload(ctx, img.ID)
}

// agentFor is a client for the agent of the node that receives an upload,
// carrying a token scoped to method on that upload alone, minted from the
// node's credential: the API holds the cluster secret (--node-token) but
// sends no node its credential.
func (s *Server) agentFor(ctx context.Context, img store.Image, method string) (*agentclient.Client, error) {
	if s.opts.NodeToken == "" {
		return nil, apiErr(fault.NodeUnreachable, "the API cannot reach the node agents: start it with --node-token (CLOUDIMAGES_NODE_TOKEN), the cluster secret the worker holds, so it can stream uploads to them")
	}
	node, err := s.store.Node(ctx, img.NodeID)
	if err != nil {
		return nil, fmt.Errorf("node %s of upload %s: %w", img.NodeID, img.ID, err)
	}
	token := nodeauth.Mint(nodeauth.Credential(s.opts.NodeToken, node.ID), method, agentclient.UploadPath(img.ID), time.Now().Add(nodeauth.MaxLifetime))
	return agentclient.New(node.Address, token, agentclient.WithTLS(s.opts.AgentTLS)), nil
}

// deleteUpload is the termination extension: an upload still receiving is
// cancelled (its workflow removes the partial data, the image ends
// CANCELLED); one that has ended is left as it is.
func (s *Server) deleteUpload(c echo.Context) error {
	ctx := c.Request().Context()
	img, err := s.upload(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if !img.Terminal() {
		if _, err := s.cancelDownload(ctx, img.ID); err != nil {
			return err
		}
		s.log.Info("upload cancel requested", "image_id", img.ID, "pool_id", img.PoolID)
	}
	return c.NoContent(http.StatusNoContent)
}

// copyBuffer is what one read of an upload's body may bring before it is
// passed on: large, so the bytes cross the API in few system calls.
const copyBuffer = 1 << 20

// bigCopies hands its reader to whoever copies from it (the HTTP client
// sending it to the agent) through a buffer of copyBuffer bytes rather
// than io.Copy's 32 KiB.
type bigCopies struct{ r io.Reader }

func (b bigCopies) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b bigCopies) WriteTo(w io.Writer) (int64, error) {
	return io.CopyBuffer(w, struct{ io.Reader }{b.r}, make([]byte, copyBuffer))
}

// countedBody counts the bytes read from an upload's body.
type countedBody struct {
	r io.Reader
	n int64
}

func (c *countedBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// hijackBody takes a PATCH's connection over from the HTTP server: the
// body is then read from the connection itself (head is what the server
// had read of it already), and the answer written through raw, which
// becomes the response's writer and sends it, with Connection: close,
// when closed. It fails, having changed nothing, when the connection
// cannot be taken over (HTTP/2).
func hijackBody(c echo.Context) (*rawResponse, []byte, error) {
	req := c.Request()
	conn, rw, err := http.NewResponseController(c.Response()).Hijack()
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{}) // the node ends a body that stalls
	head := make([]byte, min(int64(rw.Reader.Buffered()), req.ContentLength))
	_, _ = io.ReadFull(rw.Reader, head)
	raw := &rawResponse{conn: conn, header: c.Response().Header().Clone(), method: req.Method}
	c.Response().Writer = raw
	if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		// The server sends this when a handler first reads the body; the
		// body is now read past it.
		_, _ = io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	return raw, head, nil
}

// rawResponse is the http.ResponseWriter of a request whose connection
// was taken over: it holds the answer and writes it on close.
type rawResponse struct {
	conn   net.Conn
	header http.Header
	method string
	status int
	body   bytes.Buffer
}

func (r *rawResponse) Header() http.Header { return r.header }

func (r *rawResponse) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *rawResponse) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// close sends the answer and closes the connection. When the uploader may
// still be sending (the node refused the body early), it stops writing
// and reads on for a moment before closing, as net/http does, so that
// unread bytes do not make the kernel reset the connection before the
// answer is read.
func (r *rawResponse) close() {
	if r.status == 0 {
		r.status = http.StatusInternalServerError
	}
	r.header.Set("Connection", "close")
	r.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	bodyAllowed := r.status >= 200 && r.status != http.StatusNoContent && r.status != http.StatusNotModified
	if bodyAllowed && r.method != http.MethodHead {
		r.header.Set("Content-Length", strconv.Itoa(r.body.Len()))
	} else {
		r.body.Reset()
	}
	w := bufio.NewWriter(r.conn)
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n", r.status, http.StatusText(r.status))
	_ = r.header.Write(w)
	_, _ = w.WriteString("\r\n")
	_, _ = w.Write(r.body.Bytes())
	_ = w.Flush()
	if tc, ok := r.conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_ = tc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.Copy(io.Discard, io.LimitReader(tc, 4<<20))
	}
	_ = r.conn.Close()
}
