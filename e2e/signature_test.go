package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/internal/testenv"
)

// signedVendor publishes on the mirror, under dir/, an image and a
// BSD-style CHECKSUM file listing it, as Rocky and AlmaLinux do.
func signedVendor(up *testenv.Upstream, dir string) (mirrorFile, string) {
	img := addImage(up, dir+"/image.qcow2", smallSize)
	return img, up.AddChecksumFile(dir+"/CHECKSUM", testenv.CHECKSUMBSD, dir+"/image.qcow2")
}

func entry(id, url, checksumURL string) catalog.Entry {
	return catalog.Entry{ID: id, Name: id, OS: "test", Version: "1", Arch: "x86_64", Format: "qcow2", URL: url, ChecksumURL: checksumURL, SizeBytes: smallSize}
}

// TestSignedChecksumFilesEndToEnd runs catalog downloads whose vendor signs
// its checksum file through the whole stack, with the catalog given by
// --catalog and the vendor's key by the worker's --keyring: a detached
// signature and a clearsigned file end READY "verified"; a file whose key
// the worker does not hold ends READY "not_checked"; and a mirror that
// swaps the image and rewrites the checksum file to match (the vendor's
// signature left as it was) ends FAILED with signature_invalid, with no
// file published.
func TestSignedChecksumFilesEndToEnd(t *testing.T) {
	up := testenv.NewUpstream(t)
	vendor := testenv.NewSigningKey(t, "vendor")
	absent := testenv.NewSigningKey(t, "absent") // pinned, but not in the worker's keyring

	detached, detachedSums := signedVendor(up, "detached")
	detachedSig := up.AddSignature(vendor, "detached/CHECKSUM", "detached/CHECKSUM.sig", true)

	clearsigned, clearSums := signedVendor(up, "clear")
	up.ClearSignFile(vendor, "clear/CHECKSUM")

	unchecked, uncheckedSums := signedVendor(up, "unchecked")
	uncheckedSig := up.AddSignature(absent, "unchecked/CHECKSUM", "unchecked/CHECKSUM.sig", false)

	tampered, tamperedSums := signedVendor(up, "tampered")
	tamperedSig := up.AddSignature(vendor, "tampered/CHECKSUM", "tampered/CHECKSUM.sig", true)
	evil := addImage(up, "tampered/image.qcow2", smallSize)                              // replaces the vendor's image …
	up.AddChecksumFile("tampered/CHECKSUM", testenv.CHECKSUMBSD, "tampered/image.qcow2") // … and its line in CHECKSUM

	entries := []catalog.Entry{entry("detached", detached.url, detachedSums), entry("clear", clearsigned.url, clearSums),
		entry("unchecked", unchecked.url, uncheckedSums), entry("tampered", tampered.url, tamperedSums)}
	entries[0].SignatureURL, entries[0].SigningKeys = detachedSig, []string{vendor.Fingerprint}
	entries[1].Clearsigned, entries[1].SigningKeys = true, []string{vendor.Fingerprint}
	entries[2].SignatureURL, entries[2].SigningKeys = uncheckedSig, []string{absent.Fingerprint}
	entries[3].SignatureURL, entries[3].SigningKeys = tamperedSig, []string{vendor.Fingerprint}
	catPath := filepath.Join(t.TempDir(), "catalog.json")
	data, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(catPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := testenv.StartStack(t, testenv.StackOptions{
		Env:        []string{"CLOUDIMAGES_CATALOG=" + catPath}, // the API's catalog
		WorkerArgs: []string{"--catalog", catPath, "--keyring", testenv.WriteKeyring(t, vendor), "--no-node-timeout", "20s"},
	})

	start := func(id string) api.Image {
		var img api.Image
		s.API.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"catalog_id": id, "pool_id": "local-1"}, &img, http.StatusAccepted)
		return img
	}
	ids := map[string]string{}
	for _, e := range entries {
		ids[e.ID] = start(e.ID).ID
	}

	for id, want := range map[string]struct {
		file      mirrorFile
		signature string
	}{"detached": {detached, "verified"}, "clear": {clearsigned, "verified"}, "unchecked": {unchecked, "not_checked"}} {
		img := waitStatus(t, s, ids[id], "READY", 2*time.Minute)
		checkReadyFile(t, img, want.file)
		if img.Signature != want.signature {
			t.Errorf("%s: READY with signature %q, want %q", id, img.Signature, want.signature)
		}
	}

	img := waitStatus(t, s, ids["tampered"], "FAILED", 2*time.Minute)
	if wantError(t, img, "signature_invalid") && img.Error.Message == "" {
		t.Errorf("tampered: no message")
	}
	if img.Checksum == evil.sum {
		t.Errorf("tampered: the image took the checksum %s from the unverified file", evil.sum)
	}
	checkNoData(t, s, "local-1", img.FileName)
	if n := up.Requests("tampered/image.qcow2"); n != 0 {
		t.Errorf("the tampered image was requested %d times: nothing may be downloaded before the signature is checked", n)
	}
}
