package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/internal/testenv"
)

const testImageSize = 6 << 20

// stackCatalog is three small images on the mirror: "tiny" arrives in a
// few seconds (so the bar can be seen moving) and is checked against the
// vendor-style SHA256SUMS, signed by vendor (SHA256SUMS.gpg); "slow" trickles, so it can be cancelled midway;
// "moving" takes long enough for its node to be killed under it. The last
// two have pinned checksums.
func stackCatalog(up *testenv.Upstream, vendor *testenv.SigningKey) []catalog.Entry {
	up.AddFile("tiny.qcow2", testenv.QCOW2Image(testImageSize, 1))
	up.SetFault("tiny.qcow2", testenv.Fault{BytesPerSecond: 1 << 20})
	up.AddFile("slow.qcow2", testenv.QCOW2Image(testImageSize, 2))
	up.SetFault("slow.qcow2", testenv.Fault{BytesPerSecond: 64 << 10})
	up.AddFile("moving.qcow2", testenv.QCOW2Image(testImageSize, 3))
	up.SetFault("moving.qcow2", testenv.Fault{BytesPerSecond: 384 << 10})
	sums := up.AddChecksumFile("SHA256SUMS", testenv.SHA256SUMS, "tiny.qcow2")
	sig := up.AddSignature(vendor, "SHA256SUMS", "SHA256SUMS.gpg", true)
	return []catalog.Entry{
		{ID: "tiny", Name: "Tiny test image", OS: "test", Version: "1", Arch: "x86_64", Format: "qcow2",
			URL: up.FileURL("tiny.qcow2"), ChecksumURL: sums, SizeBytes: testImageSize,
			SignatureURL: sig, SigningKeys: []string{vendor.Fingerprint}},
		{ID: "slow", Name: "Slow test image", OS: "test", Version: "2", Arch: "x86_64", Format: "qcow2",
			URL: up.FileURL("slow.qcow2"), Checksum: up.SHA256("slow.qcow2"), SizeBytes: testImageSize},
		{ID: "moving", Name: "Moving test image", OS: "test", Version: "3", Arch: "x86_64", Format: "qcow2",
			URL: up.FileURL("moving.qcow2"), Checksum: up.SHA256("moving.qcow2"), SizeBytes: testImageSize},
	}
}

// uiStack is the whole of cloudimages as processes (testenv.StartStack),
// with an API token and the test catalog, plus a pool without nodes.
type uiStack struct {
	*testenv.Stack
	t  *testing.T
	up *testenv.Upstream
}

func startUIStack(t *testing.T) *uiStack {
	t.Helper()
	up := testenv.NewUpstream(t)
	catPath := filepath.Join(t.TempDir(), "catalog.json")
	vendor := testenv.NewSigningKey(t, "vendor")
	b, err := json.Marshal(stackCatalog(up, vendor))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(catPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dbURL, ok := testenv.Postgres(t)
	if !ok {
		dbURL = testenv.SQLite(t)
	}
	s := testenv.StartStack(t, testenv.StackOptions{
		DatabaseURL: dbURL,
		APIToken:    "ui-test-api-token",
		Env:         []string{"CLOUDIMAGES_CATALOG=" + catPath, "CLOUDIMAGES_KEYRING=" + testenv.WriteKeyring(t, vendor)},
		WorkerArgs:  []string{"--no-node-timeout", "20s", "--node-grace", "3s", "--heartbeat-timeout", "5s"},
	})
	s.API.MustDo(t, http.MethodPost, "/v1/pools", map[string]any{"id": "pool-empty", "name": "pool-empty", "type": "local", "node_ids": []string{}}, nil, http.StatusCreated)
	return &uiStack{Stack: s, t: t, up: up}
}

func TestUIDownloadsCancelsAndExplainsErrorsOnTheRealStack(t *testing.T) {
	s := startUIStack(t)
	b := newBrowser(t, 1280, 900)

	// The API has a token: the page asks for it, then shows the catalog.
	b.run("open the page", 30*time.Second, chromedp.Navigate(s.APIURL()+"/"))
	b.waitFor("the token banner", `document.querySelector('#banner:not([hidden]) button') !== null`, 15*time.Second)
	b.run("enter the token", 10*time.Second,
		chromedp.Click(chromedp.CSS("#banner button")),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), s.API.Token),
		chromedp.Click(chromedp.CSS(`#token-form button[value="save"]`)))
	b.waitFor("the catalog", `document.querySelectorAll('#catalog-list .card').length === 3`, 15*time.Second)

	// Pools: the first usable one preselected, the one without nodes disabled with why.
	b.waitFor("a usable pool", `document.getElementById('pool').value !== ''`, 30*time.Second)
	if got, want := eval[string](b, `document.getElementById('pool').value`), s.firstPoolWithNodes(); got != want {
		t.Errorf("preselected pool = %q, want %q, the first pool the API lists with nodes", got, want)
	}
	if got := eval[string](b, `document.querySelector('#pool option[value="pool-empty"]').disabled + ' ' + document.querySelector('#pool option[value="pool-empty"]').textContent`); !strings.Contains(got, "true") || !strings.Contains(got, "no node is assigned") {
		t.Errorf("pool-empty option = %q, want it disabled, saying no node is assigned", got)
	}
	b.screenshot("01-catalog")

	// Download "tiny" into local-2: the bar moves, then READY.
	b.choose("pool", "local-2")
	tiny := b.download(`button[data-download="tiny"]`, "#catalog-status", "")
	b.run("follow it in Images", 10*time.Second, chromedp.Click(chromedp.CSS(`#catalog-status a[data-image-link]`)))
	row := fmt.Sprintf(`document.querySelector('[data-image=%q]')`, tiny)
	b.waitFor("the bar to move", row+`?.querySelector('progress').value > 0 && `+row+`.querySelector('progress').value < 100`, 60*time.Second)
	if got := b.text(fmt.Sprintf(`[data-image=%q] .numbers`, tiny)); !strings.Contains(got, "%") || !strings.Contains(got, " of 6.29 MB") {
		t.Errorf("progress numbers = %q, want percent and bytes of 6.29 MB", got)
	}
	b.screenshot("02-images-downloading")
	b.waitFor("tiny READY", row+`.dataset.status === 'READY'`, 90*time.Second)
	b.waitForStream("/v1/images/"+tiny+"/events", 30*time.Second)
	img := s.image(tiny)
	if img.PoolID != "local-2" || img.NodeID != "node-2" {
		t.Errorf("image went to %s on %s, want local-2 on node-2", img.PoolID, img.NodeID)
	}
	if data, err := os.ReadFile(img.Path); err != nil || testenv.SHA256(data) != s.up.SHA256("tiny.qcow2") {
		t.Errorf("READY file at %q: %v (or wrong checksum)", img.Path, err)
	}
	if got := b.text(fmt.Sprintf(`[data-image=%q] .signature`, tiny)); got != "signature verified" || img.Signature != "verified" {
		t.Errorf("signature badge = %q (API %q), want “signature verified”: the vendor signed its SHA256SUMS", got, img.Signature)
	}
	if got := b.text(fmt.Sprintf(`[data-image=%q] .note`, tiny)); !strings.Contains(got, img.Path) {
		t.Errorf("READY note = %q, want the path %s", got, img.Path)
	}
	if got, want := eval[string](b, row+`.querySelector('a[target]').href`), s.temporalWeb()+"/namespaces/default/workflows/"+img.WorkflowID; got != want {
		t.Errorf("Temporal Web link = %q, want %q", got, want)
	}

	// A second, trickled download is cancelled from its row.
	b.run("back to the catalog", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#catalog"]`)))
	slow := b.download(`button[data-download="slow"]`, "#catalog-status", tiny)
	b.run("open Images", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#images"]`)))
	slowRow := fmt.Sprintf(`document.querySelector('[data-image=%q]')`, slow)
	b.waitFor("slow transferring", slowRow+`?.querySelector('progress').value > 0`, 60*time.Second)
	b.run("cancel it", 10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-image=%q] button[data-action="cancel"]`, slow))))
	b.waitFor("slow CANCELLED", slowRow+`.dataset.status === 'CANCELLED'`, 60*time.Second)
	if got := s.image(slow).Status; got != "CANCELLED" {
		t.Errorf("API says the cancelled image is %s", got)
	}
	if got := eval[string](b, slowRow+`.innerText`); !strings.Contains(got, "Cancelled; the partial file was removed.") ||
		strings.Contains(got, "Cancelling") || eval[bool](b, slowRow+`.querySelector('[role=alert]').hidden`) == false {
		t.Errorf("cancelled row reads %q: want the note, no “Cancelling…” left over, no error box", got)
	}

	// Its node dies mid-download on the shared pool: the row tells, and the
	// download still ends READY on the other node.
	b.run("back to the catalog", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#catalog"]`)))
	b.choose("pool", "shared")
	moving := b.download(`button[data-download="moving"]`, "#catalog-status", slow)
	b.run("open Images", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#images"]`)))
	movingRow := fmt.Sprintf(`document.querySelector('[data-image=%q]')`, moving)
	b.waitFor("moving transferring, with rate and time left", movingRow+`?.querySelector('progress').value > 10 && /\/s · .* left$/.test(`+movingRow+`.querySelector('.numbers').textContent)`, 60*time.Second)
	first := s.image(moving).NodeID
	other := map[string]string{"node-1": "node-2", "node-2": "node-1"}[first]
	if other == "" {
		t.Fatalf("moving image is on node %q, want node-1 or node-2", first)
	}
	s.Agent(first).Kill()
	// A killed agent is seen as down (refused) and left at once; on a busy
	// machine it may first have stopped answering, and be left as unreachable.
	b.waitFor("the failover in the row", movingRow+fmt.Sprintf(`.querySelector('.failovers').textContent.includes(%q) || `, first+" down → continued on "+other)+
		movingRow+fmt.Sprintf(`.querySelector('.failovers').textContent.includes(%q)`, first+" unreachable → continued on "+other), 60*time.Second)
	b.screenshot("03-images-failover")
	b.waitFor("moving READY", movingRow+`.dataset.status === 'READY'`, 90*time.Second)
	if got := b.text(fmt.Sprintf(`[data-image=%q] .failovers`, moving)); !strings.Contains(got, first+" down → continued on "+other) &&
		!strings.Contains(got, first+" unreachable → continued on "+other) {
		t.Errorf("failovers after READY = %q, want “%s down → continued on %s” (or unreachable)", got, first, other)
	}
	if got := s.image(moving).NodeID; got != other {
		t.Errorf("moving image READY on %s, want %s", got, other)
	}
	s.Agent(first).Restart()

	// A URL where there is no file: the download fails, and the row says why in words.
	b.run("back to the catalog", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#catalog"]`)))
	b.run("fill the custom form", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("custom-url"), s.up.FileURL("missing.qcow2")),
		chromedp.SendKeys(chromedp.ID("custom-name"), "missing"),
		chromedp.SendKeys(chromedp.ID("custom-checksum"), "sha256:"+strings.Repeat("0", 64)))
	missing := b.download("#custom-submit", "#custom-status", "")
	b.run("open Images", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#images"]`)))
	missingRow := fmt.Sprintf(`[data-image=%q]`, missing)
	b.waitFor("missing FAILED", fmt.Sprintf(`document.querySelector(%q)?.dataset.status === 'FAILED'`, missingRow), 60*time.Second)
	if got := b.text(missingRow + ` [role="alert"]`); !strings.Contains(got, "The file is not at that URL") {
		t.Errorf("error shown for a missing file = %q, want the sentence for upstream_not_found", got)
	}
	b.screenshot("04-images-ready-cancelled-failed")

	// A URL the API refuses outright: the form says so.
	b.run("back to the catalog", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#catalog"]`)))
	b.run("submit an ftp URL", 10*time.Second,
		chromedp.SetValue(chromedp.ID("custom-url"), "ftp://127.0.0.1/x.qcow2"),
		chromedp.Click(chromedp.ID("custom-submit")))
	b.waitFor("the form's error", `document.getElementById('custom-status').classList.contains('error')`, 15*time.Second)
	if got := b.text("#custom-status"); !strings.Contains(got, "This URL is not allowed") || !strings.Contains(got, "ftp://127.0.0.1/x.qcow2") {
		t.Errorf("error shown for an ftp URL = %q, want the sentence for url_forbidden and the API's message", got)
	}
	b.screenshot("05-catalog-bad-url")

	// Deleting the READY image asks once more, then removes its file.
	b.run("open Images", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#images"]`)))
	del := fmt.Sprintf(`[data-image=%q] button[data-action="delete"]`, tiny)
	b.run("click Delete", 10*time.Second, chromedp.Click(chromedp.CSS(del)))
	if got := b.text(del); got != "Really delete the file?" {
		t.Errorf("Delete asks %q, want “Really delete the file?”", got)
	}
	if _, err := os.Stat(img.Path); err != nil {
		t.Errorf("the file went before the delete was confirmed: %v", err)
	}
	b.run("confirm Delete", 10*time.Second, chromedp.Click(chromedp.CSS(del)))
	b.waitFor("the row to go", row+` === null`, 30*time.Second)
	if _, err := os.Stat(img.Path); !os.IsNotExist(err) {
		t.Errorf("after Delete, %s: %v, want it gone", img.Path, err)
	}

	b.run("open Nodes and pools", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#nodes"]`)))
	b.waitFor("both nodes online", `document.querySelectorAll('#nodes-table .node-online').length === 2`, 30*time.Second)
	b.screenshot("06-nodes")
}

// download clicks a Download button and returns the id of the image it
// started, read from the link in the status line (which must differ from
// the previous one).
func (b *browser) download(button, status, previous string) string {
	b.t.Helper()
	b.run("click "+button, 10*time.Second, chromedp.Click(chromedp.CSS(button)))
	link := fmt.Sprintf(`document.querySelector('%s a[data-image-link]')?.dataset.imageLink`, status)
	b.waitFor("the started message", fmt.Sprintf(`(%s || '') !== '' && %s !== %q`, link, link, previous), 30*time.Second)
	return eval[string](b, link)
}

// apiImage is the part of the contract's Image this test checks.
type apiImage struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	PoolID     string `json:"pool_id"`
	NodeID     string `json:"node_id"`
	Path       string `json:"path"`
	WorkflowID string `json:"workflow_id"`
	Signature  string `json:"signature"`
}

func (s *uiStack) image(id string) apiImage {
	s.t.Helper()
	var img apiImage
	s.API.MustDo(s.t, http.MethodGet, "/v1/images/"+id, nil, &img, http.StatusOK)
	return img
}

// firstPoolWithNodes returns the first pool in the API's order that has
// nodes (every node of the stack is up).
func (s *uiStack) firstPoolWithNodes() string {
	s.t.Helper()
	var pools struct {
		Items []struct {
			ID      string   `json:"id"`
			NodeIDs []string `json:"node_ids"`
		} `json:"items"`
	}
	s.API.MustDo(s.t, http.MethodGet, "/v1/pools", nil, &pools, http.StatusOK)
	for _, p := range pools.Items {
		if len(p.NodeIDs) > 0 {
			return p.ID
		}
	}
	s.t.Fatalf("GET /v1/pools lists no pool with nodes: %+v", pools.Items)
	return ""
}

// temporalWeb is where the UI should link to: the API's --temporal-web-url
// as GET /v1/settings tells it. The stack's API always serves it, so a
// failure here fails the test rather than falling back to the UI's
// default, which would let a broken /v1/settings pass unseen.
func (s *uiStack) temporalWeb() string {
	s.t.Helper()
	var settings struct {
		TemporalWebURL string `json:"temporal_web_url"`
	}
	s.API.MustDo(s.t, http.MethodGet, "/v1/settings", nil, &settings, http.StatusOK)
	if settings.TemporalWebURL != s.TemporalWebURL() {
		s.t.Errorf("GET /v1/settings: temporal_web_url = %q, want the stack's %q", settings.TemporalWebURL, s.TemporalWebURL())
	}
	return strings.TrimRight(settings.TemporalWebURL, "/")
}
