package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/store"
)

func TestPoolTransferWindowsAreKeptShownAndChecked(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		pool, node := e.seed("local", "127.0.0.1:1")
		var p struct {
			TransferWindows []string `json:"transfer_windows"`
			TimeZone        *string  `json:"time_zone"`
		}
		e.must(http.StatusCreated, "POST", "/v1/pools", map[string]any{"id": "night", "type": "local", "node_ids": []string{node},
			"transfer_windows": []string{"22:00-06:00", " 12:00-13:00"}, "time_zone": "Europe/Berlin"}, &p)
		if strings.Join(p.TransferWindows, ",") != "22:00-06:00,12:00-13:00" || p.TimeZone == nil || *p.TimeZone != "Europe/Berlin" {
			t.Fatalf("created pool shows windows %v zone %v", p.TransferWindows, p.TimeZone)
		}
		p.TransferWindows, p.TimeZone = nil, nil
		e.must(http.StatusOK, "GET", "/v1/pools/"+pool, nil, &p)
		if p.TransferWindows == nil || len(p.TransferWindows) != 0 || p.TimeZone == nil || *p.TimeZone != "" {
			t.Fatalf("a pool without windows shows %v zone %v, want [] and \"\"", p.TransferWindows, p.TimeZone)
		}
		for _, bad := range []map[string]any{
			{"transfer_windows": []string{"22-06"}},
			{"transfer_windows": []string{"25:00-06:00"}},
			{"transfer_windows": []string{"22:00-06:00"}, "time_zone": "Mars/Olympus"},
			{"transfer_windows": []string{"22:00-06:00"}, "time_zone": "Local"},
			{"transfer_windows": "22:00-06:00"},
		} {
			body := map[string]any{"id": "bad", "type": "local"}
			for k, v := range bad {
				body[k] = v
			}
			r := e.do("POST", "/v1/pools", body)
			msg := string(r.body)
			if r.status != http.StatusBadRequest || r.errCode(t) != "invalid_request" ||
				!(strings.Contains(msg, "HH:MM-HH:MM") || strings.Contains(msg, "IANA") || strings.Contains(msg, "transfer_windows")) {
				t.Errorf("%v: %d %s, want 400 invalid_request saying the format", bad, r.status, msg)
			}
		}
		e.must(http.StatusNotFound, "GET", "/v1/pools/bad", nil, nil)

		// A download waiting for its window shows until when, and why.
		ctx := context.Background()
		if _, _, err := e.store.CreateImage(ctx, &store.Image{ID: "waits", SourceKey: "k", PoolID: "night", FileName: "f.img"}); err != nil {
			t.Fatal(err)
		}
		until := time.Date(2030, 6, 1, 20, 0, 0, 0, time.UTC)
		if err := e.store.Transition(ctx, "waits", store.ToWaiting{Until: until, Message: "waiting for a transfer window"}); err != nil {
			t.Fatal(err)
		}
		var img struct {
			Status   string `json:"status"`
			Progress struct {
				WaitingUntil *time.Time `json:"waiting_until"`
				Message      string     `json:"message"`
			} `json:"progress"`
		}
		e.must(http.StatusOK, "GET", "/v1/images/waits", nil, &img)
		if img.Status != "PENDING" || img.Progress.WaitingUntil == nil || !img.Progress.WaitingUntil.Equal(until) || img.Progress.Message != "waiting for a transfer window" {
			t.Fatalf("waiting image: %+v", img)
		}
	})
}
