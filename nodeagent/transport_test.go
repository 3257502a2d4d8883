package nodeagent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/egress"
)

// TestProxiedTargetNameIsResolvedAndJudged: through a proxy the agent
// resolves the target's name itself and refuses it, before the proxy
// hears of it, when any of its addresses is internal; a name with only
// public addresses goes to the proxy.
func TestProxiedTargetNameIsResolvedAndJudged(t *testing.T) {
	var asked atomic.Int32
	proxySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		io.WriteString(w, "from the proxy")
	}))
	defer proxySrv.Close()
	proxy, err := egress.NewProxy(proxySrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string][]netip.Addr{
		"internal.example": {netip.MustParseAddr("10.0.0.5")},
		"mixed.example":    {netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("169.254.169.254")},
		"public.example":   {netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("2606:2800:21f:cb07:6820:80da:af6b:8b2c")},
	}
	client := newUpstreamClient(upstreamOptions{control: dialControl, headerTimeout: 5 * time.Second, proxy: proxy,
		resolve: func(_ context.Context, host string) ([]netip.Addr, error) { return names[host], nil }})
	for host, want := range map[string]string{"internal.example": "private", "mixed.example": "link-local"} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+host+"/x.img", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: sent to the proxy; want refused", host)
			continue
		}
		if got := requestError(context.Background(), err, req); !strings.Contains(got.Error(), "url_forbidden") || !strings.Contains(got.Error(), want) {
			t.Errorf("%s: %v; want url_forbidden about a %s address", host, got, want)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("the proxy was asked %d times for internal targets; want never", n)
	}
	resp, err := client.Get("http://public.example/x.img")
	if err != nil {
		t.Fatalf("public target through the proxy: %v", err)
	}
	resp.Body.Close()
	if asked.Load() != 1 {
		t.Errorf("the proxy was asked %d times for the public target; want once", asked.Load())
	}
}
