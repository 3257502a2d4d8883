package web_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/quantix/cloudimages/internal/testenv"
)

// throttleUploads limits what the page sends to bytesPerSecond (-1: no
// limit), as DevTools' network throttling does.
func (b *browser) throttleUploads(bytesPerSecond float64) {
	b.t.Helper()
	b.run("throttle uploads", 10*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
			MatchedNetworkConditions: []*network.Conditions{{DownloadThroughput: -1, UploadThroughput: bytesPerSecond}}})
		return err
	}))
}

// TestUIUploadResumesAfterAReload uploads an image from the Catalog page
// with the vendored tus-js-client, reloads the page half way, picks the
// same file again, and checks that the upload resumed (the same upload,
// not a second one) and ended READY with the file's checksum.
func TestUIUploadResumesAfterAReload(t *testing.T) {
	s := startUIStack(t)
	b := newBrowser(t, 1280, 900)
	data := testenv.QCOW2Image(8<<20, 31)
	file := filepath.Join(t.TempDir(), "uploaded.qcow2")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}

	b.run("open the page", 30*time.Second, chromedp.Navigate(s.APIURL()+"/"))
	b.waitFor("the token banner", `document.querySelector('#banner:not([hidden]) button') !== null`, 15*time.Second)
	b.run("enter the token", 10*time.Second,
		chromedp.Click(chromedp.CSS("#banner button")),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), s.API.Token),
		chromedp.Click(chromedp.CSS(`#token-form button[value="save"]`)))
	pickAndUpload := func() {
		b.waitFor("a usable pool", `document.getElementById('pool').value !== ''`, 30*time.Second)
		b.choose("pool", "local-1")
		b.run("pick the file and upload", 10*time.Second,
			chromedp.SetUploadFiles(chromedp.ID("upload-file"), []string{file}),
			chromedp.Click(chromedp.ID("upload-submit")))
	}

	b.throttleUploads(1 << 20) // 8 s for the file: time to reload half way
	pickAndUpload()
	b.waitFor("the upload half way", `document.getElementById('upload-progress').value > 25`, 60*time.Second)
	if got := b.text("#upload-numbers"); !strings.Contains(got, "% — ") || !strings.Contains(got, "/s") || !strings.Contains(got, "left") {
		t.Errorf("upload numbers = %q, want percent, bytes, speed and time left", got)
	}
	b.screenshot("upload-01-half-way")
	stored := eval[string](b, `JSON.stringify(Object.entries(localStorage).filter(([k]) => k.startsWith('tus::')).map(([, v]) => JSON.parse(v).uploadUrl))`)
	var urls []string
	if err := json.Unmarshal([]byte(stored), &urls); err != nil || len(urls) != 1 {
		t.Fatalf("tus-js-client remembered %s (%v), want one upload", stored, err)
	}
	id := urls[0][strings.LastIndex(urls[0], "/")+1:]

	b.run("reload the page", 30*time.Second, chromedp.Reload())
	b.throttleUploads(-1)
	pickAndUpload()
	b.waitFor("the resume", `document.getElementById('upload-status').textContent.includes('Resuming')`, 15*time.Second)
	b.waitFor("the upload's end", `document.getElementById('upload-status').textContent.includes('is uploaded')`, 60*time.Second)
	b.screenshot("upload-02-done")
	if got := eval[string](b, `document.querySelector('#upload-status a[data-image-link]')?.dataset.imageLink || ''`); got != id {
		t.Errorf("the finished upload links image %q, want %q, the upload started before the reload", got, id)
	}

	deadline := time.Now().Add(90 * time.Second)
	img := s.image(id)
	for img.Status != "READY" && time.Now().Before(deadline) {
		if img.Status == "FAILED" || img.Status == "CANCELLED" {
			t.Fatalf("uploaded image ended %s", img.Status)
		}
		time.Sleep(200 * time.Millisecond)
		img = s.image(id)
	}
	if img.Status != "READY" || img.PoolID != "local-1" {
		t.Fatalf("uploaded image %s in %s, want READY in local-1", img.Status, img.PoolID)
	}
	var full struct {
		Checksum string `json:"checksum"`
		Source   string `json:"source"`
	}
	s.API.MustDo(t, "GET", "/v1/images/"+id, nil, &full, 200)
	if full.Checksum != testenv.SHA256(data) || full.Source != "upload" {
		t.Errorf("image checksum %s source %q, want %s upload", full.Checksum, full.Source, testenv.SHA256(data))
	}
	if got, err := os.ReadFile(img.Path); err != nil || testenv.SHA256(got) != testenv.SHA256(data) {
		t.Errorf("READY file at %q: %v (or other bytes)", img.Path, err)
	}
	var images struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	s.API.MustDo(t, "GET", "/v1/images", nil, &images, 200)
	n := 0
	for _, i := range images.Items {
		if i.Name == "uploaded.qcow2" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d images named uploaded.qcow2, want 1: the reload must resume, not upload again", n)
	}
}
