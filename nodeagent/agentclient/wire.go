// Package agentclient is the node agent's wire: the JSON types of its HTTP
// API and the Go client that workers (and tests, and the bench) use to talk
// to an agent. It lives apart from the agent's server so that callers
// import only the wire, never the engine behind it.
package agentclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeauth"
)

// Download states, as in the contract.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateVerifying = "verifying"
	// StateConverting: verified and inspected, now being converted to the
	// pool's format (DownloadRequest.ConvertTo) with qemu-img.
	StateConverting = "converting"
	// StatePaused: stopped by a pause (POST /v1/downloads/{id}/pause) with
	// its partial data and checkpoint kept; the same request started again
	// resumes from them, a cancel removes them. Not a final state, and not
	// resumed when the agent restarts: only a start resumes it.
	StatePaused = "paused"
	// StateWaitingCredential: the job needs a source credential the agent
	// no longer holds (it keeps secrets in memory only, and restarted); it
	// goes on once the same request is POSTed again with the credential.
	StateWaitingCredential = "waiting_credential"
	StateCompleted         = "completed"
	StateFailed            = "failed"
	StateCancelled         = "cancelled"
)

// ImagesDir is the folder inside a pool directory that holds published
// images: a published image is {pool dir}/cloud-images/{file_name}.
const ImagesDir = "cloud-images"

// DownloadRequest asks a node to download a URL into one of its pools.
// Checksum is "sha256:HEX" or "sha512:HEX"; empty means the caller accepts
// an unverified image (the agent still reports the sha256 it computed).
//
// ID and FileName are names (catalog.ValidName). SizeBytes, when given, is
// the exact size: a mirror that serves another size fails the download.
// Format is the disk format ("qcow2", "raw", ...); when it is "qcow2", or
// empty and FileName ends in ".qcow2", the data must start with the qcow2
// magic. Data compressed with xz, gzip, bzip2 or zstd (by its magic
// bytes) is published decompressed under FileName; Checksum and SizeBytes
// then describe the compressed bytes, and the format is checked on the
// decompressed ones. On a shared pool, a download started again with the same ID on
// another node resumes the partial data the first node left.
type DownloadRequest struct {
	ID string `json:"id"`
	// URL is the mirror to fetch from; exactly one of URL and Peer is set.
	URL string `json:"url,omitempty"`
	// Peer, instead of URL, names another agent's published file to copy
	// (a distribution's later copies). Sent only to agents whose health
	// names FeaturePeerCopy.
	Peer      *PeerSource `json:"peer,omitempty"`
	PoolID    string      `json:"pool_id"`
	FileName  string      `json:"file_name"`
	Checksum  string      `json:"checksum"`
	SizeBytes int64       `json:"size_bytes,omitempty"`
	Format    string      `json:"format,omitempty"`
	// ConvertTo, when set ("raw" or "qcow2") and not the image's own format,
	// has the agent convert the verified, inspected image to it before
	// publishing. Sent only to agents whose health names FeatureConvert.
	ConvertTo string `json:"convert_to,omitempty"`
	// Mirrors are more URLs of the same file, tried in order after URL when
	// one answers 404 or 5xx, cannot be reached or stalls; the partial data
	// is resumed when the next one's validators agree. Sent only to agents
	// whose health names FeatureMirrors.
	Mirrors []string `json:"mirrors,omitempty"`
	// Credential is sent to the mirrors on its host only. Sent only to
	// agents whose health names FeatureSourceCredentials.
	Credential *Credential `json:"credential,omitempty"`
	// MaxBytesPerSecond caps this download's rate (the node's own
	// --max-bandwidth caps all of them together). Sent only to agents
	// whose health names FeatureBandwidthLimit.
	MaxBytesPerSecond int64 `json:"max_bytes_per_second,omitempty"`
}

// PeerSource is another node agent's published file, the source of a peer
// copy: the target agent GETs {Address}/v1/pools/{PoolID}/files/{FileName}
// (FilePath) with Token as its bearer, a token the worker minted from the
// source node's credential for that one read (nodeauth.MintFileRead).
// Address is the source agent's base URL ("http://10.0.0.5:9090"; a bare
// host:port means http). The copy is verified against the request's
// Checksum, the source image's file_checksum.
type PeerSource struct {
	NodeID   string `json:"node_id"`
	Address  string `json:"address"`
	PoolID   string `json:"pool_id"`
	FileName string `json:"file_name"`
	// Token is short-lived and scoped to this one file: the agent keeps it
	// in memory only, and requests differing only in it are the same.
	Token string `json:"token"`
}

// String never shows the token.
func (p PeerSource) String() string {
	return fmt.Sprintf("peer %s (%s) %s/%s", p.NodeID, p.Address, p.PoolID, p.FileName)
}

// LogValue is String, for log/slog.
func (p PeerSource) LogValue() slog.Value { return slog.StringValue(p.String()) }

// FilePath is the agent route that serves a published file to peers
// (GET, HEAD, with Range): the path a scoped token for it is minted on.
func FilePath(poolID, fileName string) string { return nodeauth.FileReadPath(poolID, fileName) }

// URLs are the request's URL and then its mirrors, in the order tried.
func (r DownloadRequest) URLs() []string { return append([]string{r.URL}, r.Mirrors...) }

// Same reports whether two requests ask for the same download: equal in
// every field, the credential compared by name and host only (its secret
// is re-sent, and may have been rotated). Two peer copies are the same
// whichever peer they name: the bytes are pinned by Checksum and
// SizeBytes, so the worker may send the request again with another source
// node (the first one died) or a fresh token, and the copy goes on from
// where it was.
func (r DownloadRequest) Same(o DownloadRequest) bool {
	if r.Peer != nil && o.Peer != nil {
		r.Peer, o.Peer = &PeerSource{}, &PeerSource{}
	}
	a, errA := json.Marshal(r.Redacted())
	b, errB := json.Marshal(o.Redacted())
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// Redacted is the request with its credential's secret left out: what the
// agent writes into its job records.
func (r DownloadRequest) Redacted() DownloadRequest {
	r.Credential = r.Credential.Redacted()
	if r.Peer != nil {
		p := *r.Peer
		p.Token = ""
		r.Peer = &p
	}
	return r
}

// Download is a node-side download job.
type Download struct {
	ID             string  `json:"id"`
	PoolID         string  `json:"pool_id"`
	FileName       string  `json:"file_name"`
	Path           string  `json:"path"`
	State          string  `json:"state"`
	BytesDone      int64   `json:"bytes_done"`
	BytesTotal     int64   `json:"bytes_total"`
	BytesPerSecond float64 `json:"bytes_per_second"`
	Checksum       string  `json:"checksum"`
	// Format and VirtualSizeBytes are what the agent found by inspecting
	// the published file ("qcow2", "raw", …); empty until it is published.
	Format           string `json:"format,omitempty"`
	VirtualSizeBytes int64  `json:"virtual_size_bytes,omitempty"`
	// Compression is how the downloaded bytes were compressed ("none",
	// "xz", "gzip", "bzip2", "zstd"); Checksum is of those bytes as
	// downloaded, FileChecksum ("sha256:HEX") of the published file,
	// computed from the bytes as written. Both set once published.
	Compression  string `json:"compression,omitempty"`
	FileChecksum string `json:"file_checksum,omitempty"`
	// Mirrors says how many of the bytes kept each URL served (the
	// request's URL first), passwords hidden; absent from agents without
	// FeatureMirrors.
	Mirrors []MirrorBytes `json:"mirrors,omitempty"`
	// Source is where the bytes come from: SourceMirror or SourcePeer
	// (absent for uploads, and from agents without FeaturePeerCopy).
	// BytesFromPeer counts the bytes kept that peers served.
	Source        string       `json:"source,omitempty"`
	BytesFromPeer int64        `json:"bytes_from_peer,omitempty"`
	Error         *fault.Error `json:"error"`
	StartedAt     *time.Time   `json:"started_at"`
	FinishedAt    *time.Time   `json:"finished_at"`
	// Version grows with every change of the job: its state, its bytes.
	// It is what ?after= of a long-poll names (FeatureLongPoll); its
	// value means nothing else. 0 from agents without FeatureLongPoll.
	Version int64 `json:"version,omitempty"`
}

// Where a download's bytes come from (Download.Source).
const (
	SourceMirror = "mirror"
	SourcePeer   = "peer"
)

// MirrorBytes is how many bytes of a download one mirror served.
type MirrorBytes struct {
	URL   string `json:"url"`
	Bytes int64  `json:"bytes"`
}

// Finished reports whether the job has ended, well or not.
func (d Download) Finished() bool { return FinishedState(d.State) }

// FinishedState reports whether a download state is final.
func FinishedState(s string) bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// Health is the agent's answer to GET /v1/health. ActiveDownloads counts
// the downloads not yet ended: running, verifying and queued. Features
// names what this agent supports (the Feature constants), so a worker can
// send an agent only what it understands while both are upgraded one at
// a time; an agent from before features were reported sends none.
type Health struct {
	NodeID          string       `json:"node_id"`
	Version         string       `json:"version"`
	Features        []string     `json:"features"`
	Pools           []PoolHealth `json:"pools"`
	ActiveDownloads int          `json:"active_downloads"`
	// QemuImg is the qemu-img the agent converts with, or why it has none
	// (then Features lacks FeatureConvert). Nil from older agents.
	QemuImg *QemuImg `json:"qemu_img,omitempty"`
}

// QemuImg is the agent's converter as health reports it: Path when the
// agent has one, else Missing, which says why and what to do.
type QemuImg struct {
	Path    string `json:"path,omitempty"`
	Missing string `json:"missing,omitempty"`
}

// What an agent may support, as named in Health.Features.
const (
	// FeatureMaxImageSize: bodies are capped (--max-image-size, the
	// mirror's Content-Length, size_bytes) with too_large.
	FeatureMaxImageSize = "max_image_size"
	// FeatureMinFree: each pool keeps a free-space reserve (--min-free).
	FeatureMinFree = "min_free"
	// FeatureNoReplacePublish: publishing never replaces an existing file;
	// a taken name is a conflict.
	FeatureNoReplacePublish = "noreplace_publish"
	// FeatureRehashTakeover: partial data taken over from another node is
	// re-hashed from the disk before it is trusted.
	FeatureRehashTakeover = "rehash_takeover"
	// FeatureStrongValidatorResume: unverified downloads resume only with
	// a strong ETag.
	FeatureStrongValidatorResume = "strong_validator_resume"
	// FeatureBoundedQueue: past --max-queued waiting downloads, a request
	// is refused with a retryable node_unreachable (503).
	FeatureBoundedQueue = "bounded_queue"
	// FeatureDecompress: a download compressed with xz, gzip, bzip2 or
	// zstd is verified as downloaded and published decompressed, with
	// Compression and FileChecksum reported. An agent without it refuses
	// such a file or publishes the compressed bytes: send it none.
	FeatureDecompress = "decompress"
	// FeatureConvert: the agent has qemu-img and converts to
	// DownloadRequest.ConvertTo. An agent without qemu-img does not name it,
	// and a worker sends ConvertTo only to agents that do.
	FeatureConvert = "convert"
	// FeatureLongPoll: GET /v1/downloads/{id}?wait=DURATION&after=VERSION
	// holds the answer until the job changes from VERSION: at once when it
	// ended or waits for its caller (waiting_credential, paused); a second
	// after the request at the earliest when only its bytes moved or it
	// went on to a state it leaves by itself (queued, running, verifying,
	// converting); else when the wait (at most MaxLongPollWait) is over.
	// Downloads carry Version. An agent without it answers such a GET at
	// once.
	FeatureLongPoll = "long_poll"
	// FeaturePause: POST /v1/downloads/{id}/pause stops a download and
	// keeps its partial data (state paused) for a later start to resume,
	// as transfer windows need. An agent without it can only be cancelled.
	FeaturePause = "pause"
	// FeatureMirrors: DownloadRequest.Mirrors are tried in order, and
	// Download.Mirrors says how much each served. An agent without it gets
	// the first URL only.
	FeatureMirrors = "mirrors"
	// FeatureSourceCredentials: DownloadRequest.Credential is sent to its
	// host, kept in memory only, and asked for again after a restart
	// (StateWaitingCredential).
	FeatureSourceCredentials = "source_credentials"
	// FeatureBandwidthLimit: the agent honours
	// DownloadRequest.MaxBytesPerSecond. An agent without it refuses the
	// field (unknown JSON): send it none.
	FeatureBandwidthLimit = "bandwidth_limit"
	// FeatureLink: PUT /v1/pools/{pool_id}/links/{name} publishes a second
	// name for a published file (a hard link, replaced atomically), as a
	// subscription's "{catalog_id}-latest.{format}".
	FeatureLink = "link"
	// FeaturePeerCopy: the agent serves its published files to peers (GET
	// /v1/pools/{pool_id}/files/{file_name} with Range, under a scoped
	// token) and takes DownloadRequest.Peer as a source. An agent without
	// it refuses the field (unknown JSON): send it none.
	FeaturePeerCopy = "peer_copy"
)

// LinkRequest is the body of PUT /v1/pools/{pool_id}/links/{name}: the
// published file the name is to be a hard link to.
type LinkRequest struct {
	Target string `json:"target"`
}

// Link is the answer: the link's path, and the file it names.
type Link struct {
	PoolID string `json:"pool_id"`
	Name   string `json:"name"`
	Path   string `json:"path"`
	Target string `json:"target"`
}

// Supports reports whether the agent named a feature in its health answer.
func (h Health) Supports(feature string) bool { return slices.Contains(h.Features, feature) }

// PoolHealth is one pool as the agent sees it.
type PoolHealth struct {
	ID         string `json:"id"`
	Path       string `json:"path"`
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
}

// Pool returns the pool with the given id, if the agent serves it.
func (h Health) Pool(id string) (PoolHealth, bool) {
	for _, p := range h.Pools {
		if p.ID == id {
			return p, true
		}
	}
	return PoolHealth{}, false
}

// PoolIDs returns the ids of the pools the agent serves, in its order.
func (h Health) PoolIDs() []string {
	ids := make([]string, 0, len(h.Pools))
	for _, p := range h.Pools {
		ids = append(ids, p.ID)
	}
	return ids
}

// FeatureUpload: the agent receives uploads (PUT, GET and PATCH
// /v1/uploads/{id}): the bytes are pushed to it rather than fetched from a
// mirror, then verified, inspected and published like a download's.
const FeatureUpload = "upload"

// UploadRequest asks a node to receive an upload into one of its pools.
// SizeBytes is the exact size the uploader declared (required); Checksum,
// when given, must match the bytes received, and when not the agent
// computes the sha256 and reports it. FileName, Format and ConvertTo are
// as in DownloadRequest.
type UploadRequest struct {
	ID        string `json:"id"`
	PoolID    string `json:"pool_id"`
	FileName  string `json:"file_name"`
	Checksum  string `json:"checksum"`
	SizeBytes int64  `json:"size_bytes"`
	Format    string `json:"format,omitempty"`
	ConvertTo string `json:"convert_to,omitempty"`
}

// Upload is where a node-side upload stands. Offset is how many bytes the
// node holds on disk (synced) and has hashed: the next PATCH starts there.
// State is a Download's: running while bytes are awaited, then verifying,
// converting and completed or failed. GET /v1/downloads/{id} shows the same
// job as a Download; DELETE /v1/downloads/{id} cancels it.
type Upload struct {
	ID     string       `json:"id"`
	PoolID string       `json:"pool_id"`
	Offset int64        `json:"offset"`
	Length int64        `json:"length"`
	State  string       `json:"state"`
	Error  *fault.Error `json:"error"`
}

// OffsetHeader carries the offset of a PATCH /v1/uploads/{id} body, as in
// the tus protocol: the body's bytes go at this offset of the upload,
// which must be the node's Offset.
const OffsetHeader = "Upload-Offset"

// UploadPath is the agent's route of an upload: PATCH on it needs a token
// scoped to it (see package nodeauth), which the API mints.
func UploadPath(id string) string { return "/v1/uploads/" + url.PathEscape(id) }

// Long-poll bounds (FeatureLongPoll). A longer wait is cut to
// MaxLongPollWait; byte progress ends a wait no sooner than
// LongPollProgressEvery after the request came, so that a watcher asks
// at most about once a second while bytes move.
const (
	MaxLongPollWait       = 30 * time.Second
	LongPollProgressEvery = time.Second
)
