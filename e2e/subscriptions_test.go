package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/internal/testenv"
)

// vendor is a fault mirror that publishes builds of one image the way
// vendors do: the same URL, and a checksum file that names the build's
// dated file.
type vendor struct {
	up    *testenv.Upstream
	build map[int][]byte
}

const subEntry = "tiny"

func (v *vendor) publish(n int) string {
	data := testenv.QCOW2Image(256<<10, int64(1000+n))
	v.build[n] = data
	v.up.AddFile("tiny.x86_64.qcow2", data)
	sum := testenv.SHA256(data)
	name := fmt.Sprintf("Tiny-Cloud-41-1.%d.x86_64.qcow2", n)
	v.up.AddFile("tiny.x86_64.qcow2.CHECKSUM", []byte(fmt.Sprintf("# Tiny build %d\nSHA256 (%s) = %s\n", n, name, strings.TrimPrefix(sum, "sha256:"))))
	return fmt.Sprintf("41-1.%d", n)
}

// subscriptionStack starts the stack (one agent, one local pool p1,
// Temporal on a file) with a catalog whose one entry follows the vendor.
func subscriptionStack(t *testing.T) (*testenv.Stack, *vendor) {
	v := &vendor{up: testenv.NewUpstream(t), build: map[int][]byte{}}
	v.publish(1)
	entries := []catalog.Entry{{ID: subEntry, Name: "Tiny", OS: "test", Format: "qcow2", URL: v.up.FileURL("tiny.x86_64.qcow2"),
		ChecksumURL: v.up.FileURL("tiny.x86_64.qcow2.CHECKSUM")}}
	catPath := filepath.Join(t.TempDir(), "catalog.json")
	b, _ := json.Marshal(entries)
	if err := os.WriteFile(catPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := testenv.StartStack(t, testenv.StackOptions{Agents: 1, PersistTemporal: true,
		Pools: []testenv.StackPool{{ID: "p1", NodeIDs: []string{"node-1"}}},
		Env:   []string{"CLOUDIMAGES_CATALOG=" + catPath}})
	return s, v
}

func getSubscription(t *testing.T, s *testenv.Stack, id string) api.Subscription {
	t.Helper()
	var sub api.Subscription
	s.API.MustDo(t, http.MethodGet, "/v1/subscriptions/"+id, nil, &sub, http.StatusOK)
	return sub
}

// waitVersion waits until the subscription's check has made version
// current (READY, -latest naming it) and no check runs.
func waitVersion(t *testing.T, s *testenv.Stack, id, version string) api.Subscription {
	t.Helper()
	var sub api.Subscription
	eventually(t, 2*time.Minute, "subscription at version "+version, func() bool {
		sub = getSubscription(t, s, id)
		return sub.CurrentVersion == version && !sub.Checking && sub.LastError == ""
	})
	return sub
}

// readyImages lists the pool's READY images by version.
func readyImages(t *testing.T, s *testenv.Stack) map[string]api.Image {
	t.Helper()
	var page struct{ Items []api.Image }
	s.API.MustDo(t, http.MethodGet, "/v1/images?pool_id=p1&status=READY", nil, &page, http.StatusOK)
	out := map[string]api.Image{}
	for _, img := range page.Items {
		out[img.Version] = img
	}
	return out
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// checkLatest checks that the pool's tiny-latest.qcow2 is the same inode
// as the file of version's image, and that the API says so.
func checkLatest(t *testing.T, s *testenv.Stack, imgs map[string]api.Image, version string) {
	t.Helper()
	img, ok := imgs[version]
	if !ok {
		t.Fatalf("no READY image of version %s: %v", version, keys(imgs))
	}
	latest := filepath.Join(filepath.Dir(img.Path), subEntry+"-latest.qcow2")
	if inode(t, latest) != inode(t, img.Path) {
		t.Fatalf("%s is not a link to %s", latest, img.Path)
	}
	for v, other := range imgs {
		if other.Latest != (v == version) {
			t.Errorf("image of version %s: latest=%v", v, other.Latest)
		}
	}
}

func keys(m map[string]api.Image) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSubscriptionKeepsTheNewestBuildsCurrent runs a subscription on the
// built binary's processes against a vendor mirror: build 1 is downloaded
// at once, build 2 by a check (-latest moves to its inode, build 1 stays:
// keep 2), build 3 removes build 1, a pinned build survives, an unchanged
// checksum file costs a 304, a check while one runs is 409, a paused
// subscription does nothing, the schedule is in `temporal schedule
// list/describe`, and a Temporal restart between checks loses nothing.
func TestSubscriptionKeepsTheNewestBuildsCurrent(t *testing.T) {
	s, v := subscriptionStack(t)
	var sub api.Subscription
	s.API.MustDo(t, http.MethodPost, "/v1/subscriptions", map[string]any{"catalog_id": subEntry, "pool_ids": []string{"p1"}, "every": "1h", "keep": 2}, &sub, http.StatusCreated)
	if sub.ID == "" || sub.Keep != 2 || sub.Every != "1h" || sub.ScheduleID != "subscription-"+sub.ID {
		t.Fatalf("created: %+v", sub)
	}
	// A second subscription of the entry in the same pool would fight the first.
	s.API.MustDo(t, http.MethodPost, "/v1/subscriptions", map[string]any{"catalog_id": subEntry, "pool_ids": []string{"p1"}}, nil, http.StatusConflict)

	// Build 1, downloaded by the first check, which runs at once.
	sub = waitVersion(t, s, sub.ID, "41-1.1")
	// Temporal aligns an interval to the epoch: every 1h runs on the hour.
	if sub.NextCheckAt == nil || time.Until(*sub.NextCheckAt) <= 0 || time.Until(*sub.NextCheckAt) > time.Hour {
		t.Errorf("next check at %v, want within the next hour", sub.NextCheckAt)
	}
	imgs := readyImages(t, s)
	if img := imgs["41-1.1"]; len(imgs) != 1 || img.FileName != "tiny-41-1.1.qcow2" || img.Checksum != testenv.SHA256(v.build[1]) {
		t.Fatalf("after build 1: %+v", imgs)
	}
	checkLatest(t, s, imgs, "41-1.1")
	// POST /v1/images of the entry answers with its newest image.
	var answered api.Image
	s.API.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"catalog_id": subEntry, "pool_id": "p1"}, &answered, http.StatusOK)
	if answered.ID != imgs["41-1.1"].ID {
		t.Fatalf("POST /v1/images answered %s (%s), want the newest build's image", answered.ID, answered.Version)
	}

	// Nothing changed: the check asks conditionally and gets a 304.
	before := v.up.NotModified("tiny.x86_64.qcow2.CHECKSUM")
	s.API.MustDo(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/check", nil, nil, http.StatusAccepted)
	eventually(t, time.Minute, "a 304 for the unchanged checksum file", func() bool {
		return v.up.NotModified("tiny.x86_64.qcow2.CHECKSUM") > before && !getSubscription(t, s, sub.ID).Checking
	})
	if n := len(readyImages(t, s)); n != 1 {
		t.Fatalf("%d READY images after an unchanged check, want 1", n)
	}

	// Build 2: a check downloads it, -latest moves, build 1 stays (keep 2).
	v.publish(2)
	s.API.MustDo(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/check", nil, nil, http.StatusAccepted)
	waitVersion(t, s, sub.ID, "41-1.2")
	imgs = readyImages(t, s)
	if len(imgs) != 2 {
		t.Fatalf("after build 2: versions %v, want 41-1.1 and 41-1.2", keys(imgs))
	}
	checkLatest(t, s, imgs, "41-1.2")

	// A Temporal restart between checks loses nothing: the schedule, its
	// interval and the next check are still there.
	s.Temporal.Restart()
	eventually(t, time.Minute, "the schedule after a Temporal restart", func() bool {
		out, err := s.TemporalCLI("schedule", "describe", "--schedule-id", "subscription-"+sub.ID, "--output", "json")
		return err == nil && strings.Contains(out, "RefreshImageWorkflow")
	})

	// Build 3: build 1 is past keep 2 and removed, file and record.
	v.publish(3)
	s.API.MustDo(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/check", nil, nil, http.StatusAccepted)
	waitVersion(t, s, sub.ID, "41-1.3")
	old := imgs["41-1.1"]
	imgs = readyImages(t, s)
	if _, ok := imgs["41-1.1"]; ok || len(imgs) != 2 {
		t.Fatalf("after build 3: versions %v, want 41-1.2 and 41-1.3", keys(imgs))
	}
	if _, err := os.Stat(old.Path); !os.IsNotExist(err) {
		t.Fatalf("build 1's file %s: %v, want it removed", old.Path, err)
	}
	checkLatest(t, s, imgs, "41-1.3")
	var evs struct{ Items []api.SubscriptionEvent }
	s.API.MustDo(t, http.MethodGet, "/v1/subscriptions/"+sub.ID+"/events", nil, &evs, http.StatusOK)
	removed := false
	for _, e := range evs.Items {
		removed = removed || (e.Kind == "removed" && e.ImageID == old.ID && e.Version == "41-1.1")
	}
	if !removed {
		t.Fatalf("the removal of build 1 is not recorded: %+v", evs.Items)
	}

	// A pinned build does not count and survives: pin 41-1.2, publish 4
	// (slowly, to see a second check refused while it runs).
	pinned := imgs["41-1.2"]
	var got api.Image
	s.API.MustDo(t, http.MethodPatch, "/v1/images/"+pinned.ID, map[string]any{"pinned": true}, &got, http.StatusOK)
	if !got.Pinned {
		t.Fatalf("PATCH pinned: %+v", got)
	}
	s.API.MustDo(t, http.MethodDelete, "/v1/images/"+pinned.ID, nil, nil, http.StatusConflict)
	v.publish(4)
	v.up.SetFault("tiny.x86_64.qcow2", testenv.Fault{BytesPerSecond: 32 << 10})
	s.API.MustDo(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/check", nil, nil, http.StatusAccepted)
	eventually(t, time.Minute, "the check running", func() bool { return getSubscription(t, s, sub.ID).Checking })
	s.API.MustDo(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/check", nil, nil, http.StatusConflict)
	waitVersion(t, s, sub.ID, "41-1.4")
	imgs = readyImages(t, s)
	if len(imgs) != 3 || !imgs["41-1.2"].Pinned {
		t.Fatalf("after build 4: versions %v, want 41-1.2 (pinned), 41-1.3 and 41-1.4", keys(imgs))
	}
	checkLatest(t, s, imgs, "41-1.4")

	// temporal finds the schedule, and every refresh and download of the
	// subscription by its search attribute.
	out, err := s.TemporalCLI("schedule", "list")
	if err != nil || !strings.Contains(out, "subscription-"+sub.ID) {
		t.Fatalf("temporal schedule list: %v\n%s", err, out)
	}
	eventually(t, time.Minute, "refreshes and downloads listed by SubscriptionId", func() bool {
		out, err := s.TemporalCLI("workflow", "list", "--query", fmt.Sprintf("SubscriptionId=%q", sub.ID))
		return err == nil && strings.Contains(out, "RefreshImageWorkflow") && strings.Contains(out, "DownloadImageWorkflow")
	})

	// Paused, it does nothing, even every 5 s; resumed, it catches up.
	s.API.MustDo(t, http.MethodPatch, "/v1/subscriptions/"+sub.ID, map[string]any{"paused": true, "every": "5s"}, &sub, http.StatusOK)
	if !sub.Paused || sub.Every != "5s" || sub.NextCheckAt != nil {
		t.Fatalf("paused: %+v", sub)
	}
	out, err = s.TemporalCLI("schedule", "describe", "--schedule-id", "subscription-"+sub.ID, "--output", "json")
	if err != nil || !strings.Contains(out, `"paused": true`) {
		t.Fatalf("temporal schedule describe of a paused subscription: %v\n%s", err, out)
	}
	s.API.MustDo(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/check", nil, nil, http.StatusConflict)
	v.up.SetFault("tiny.x86_64.qcow2", testenv.Fault{})
	v.publish(5)
	requests := v.up.Requests("tiny.x86_64.qcow2.CHECKSUM")
	time.Sleep(12 * time.Second) // two intervals and more
	if n := v.up.Requests("tiny.x86_64.qcow2.CHECKSUM"); n != requests {
		t.Fatalf("a paused subscription fetched the checksum file %d times", n-requests)
	}
	if sub := getSubscription(t, s, sub.ID); sub.CurrentVersion != "41-1.4" {
		t.Fatalf("paused, yet at version %s", sub.CurrentVersion)
	}
	s.API.MustDo(t, http.MethodPatch, "/v1/subscriptions/"+sub.ID, map[string]any{"paused": false}, nil, http.StatusOK)
	waitVersion(t, s, sub.ID, "41-1.5")

	// DELETE stops the checks and keeps the images.
	s.API.MustDo(t, http.MethodDelete, "/v1/subscriptions/"+sub.ID, nil, nil, http.StatusNoContent)
	if _, err := s.TemporalCLI("schedule", "describe", "--schedule-id", "subscription-"+sub.ID); err == nil {
		t.Fatal("the schedule is still there after DELETE")
	}
	if n := len(readyImages(t, s)); n < 3 {
		t.Fatalf("%d READY images after DELETE of the subscription, want them kept", n)
	}
}
