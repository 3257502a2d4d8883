package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/fault"
)

// distPollEvery is how often `distributions wait` asks for the
// distribution: there is no events stream of a distribution, and a second
// is fine-grained enough for copies that take seconds to hours.
const distPollEvery = time.Second

// distributionRequest is what `distributions create` asks of
// POST /v1/distributions.
type distributionRequest struct {
	image          string // --image: a READY image's id, instead of SOURCE
	name, checksum string
	pools          []string
	allPools       bool
	maxParallel    int
}

// body is the request's JSON: --image names a READY image; otherwise a
// source that looks like a URL is one, any other is a catalog entry's id,
// as for `images pull`.
func (r distributionRequest) body(source string) map[string]any {
	b := map[string]any{}
	switch {
	case r.image != "":
		b["image_id"] = r.image
	case strings.Contains(source, "://"):
		b["url"] = source
	default:
		b["catalog_id"] = source
	}
	if r.allPools {
		b["all_pools"] = true
	} else {
		b["pool_ids"] = r.pools
	}
	for k, v := range map[string]string{"name": r.name, "checksum": r.checksum} {
		if v != "" {
			b[k] = v
		}
	}
	if r.maxParallel != 0 {
		b["max_parallel"] = r.maxParallel
	}
	return b
}

func distributionsCreate(cfg *clientConfig) *cobra.Command {
	var req distributionRequest
	var wait bool
	var o output
	cmd := &cobra.Command{
		Use:   "create (CATALOG_ID|URL | --image ID) (--pool POOL ... | --all-pools)",
		Short: "put one image into many pools: downloaded once, copied from node to node",
		Long: "Starts a distribution (POST /v1/distributions): the image is downloaded from its mirror once,\n" +
			"then copied from the nodes that hold it to the other pools' nodes, every copy verified. The same\n" +
			"source into the same pools answers with that distribution; one that ended PARTIAL or FAILED is\n" +
			"retried (only its failed pools are copied again).\n\n" +
			"--image ID distributes an image already in a pool instead (an upload, in a cluster without\n" +
			"internet): it must be READY ('cloudimages images wait ID'); every other pool gets a copy from the\n" +
			"node that holds it, verified against its file checksum. There is no mirror to fall back to: if\n" +
			"that node is down, the copies fail saying so.\n\n" +
			"With --wait it shows each pool's copy (and where its bytes come from: the mirror or node:ID) until\n" +
			"the distribution ends: READY exits 0; PARTIAL, FAILED or CANCELLED exit 1 with each failed pool's\n" +
			"error. Ctrl-C stops following, not the copies.",
		Example: "  cloudimages distributions create cirros-0.6.3 --all-pools --wait\n" +
			"  cloudimages dist create https://mirror.example/x.qcow2 --checksum sha256:HEX --name x --pool local-1 --pool local-2\n" +
			"  cloudimages images upload ./golden.qcow2 --pool local-1 --wait   # prints the image's id\n" +
			"  cloudimages dist create --image IMAGE_ID --all-pools --wait",
		Args: func(cmd *cobra.Command, args []string) error {
			if req.image != "" {
				if len(args) > 0 {
					return usagef("give a catalog entry's id, a URL or --image ID, not both (--image %s and %q)", req.image, args[0])
				}
				return nil
			}
			return exactArgs(1, "a catalog entry's id or a URL (or --image ID)")(cmd, args)
		},
		ValidArgsFunction: completeCatalog(cfg),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			switch {
			case req.allPools && len(req.pools) > 0:
				return usagef("give --pool or --all-pools, not both")
			case !req.allPools && len(req.pools) == 0:
				return usagef("name the pools with --pool P (repeatable, or comma-separated) or give --all-pools ('cloudimages pools ls' lists them)")
			case req.maxParallel < 0:
				return usagef("--max-parallel %d: want how many copies may read from one node at once, e.g. 4", req.maxParallel)
			case req.image != "" && (req.name != "" || req.checksum != ""):
				return usagef("--image names the image, its name and its checksum: leave out --name and --checksum")
			case req.image == "" && strings.Contains(args[0], "://") && req.checksum == "":
				return usagef("--checksum is required with a URL: every copy is verified against it (sha256:HEX)")
			}
			source := ""
			if len(args) > 0 {
				source = args[0]
			}
			c, err := cfg.client(cmd)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			status, err := c.Call(cmd.Context(), http.MethodPost, "/v1/distributions", req.body(source), &raw)
			if err != nil {
				return c.explain(err)
			}
			var d api.Distribution
			if err := json.Unmarshal(raw, &d); err != nil {
				return err
			}
			what := "started"
			if status == http.StatusOK {
				// A PARTIAL or FAILED one answers RUNNING: it is retried.
				what = "asked for before (same source, same pools), " + d.Status
				if d.Status == "RUNNING" {
					what += "; pools that failed before are copied again"
				}
			}
			if wait {
				fmt.Fprintf(cmd.ErrOrStderr(), "distribution %s (%s into %s): %s\n", d.ID, distSourceText(d), distPoolsText(d), what)
				return waitDistribution(cmd, c, d.ID, o)
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  %s; follow it with: cloudimages distributions wait %s\n", d.ID, d.Status, what, d.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&req.pools, "pool", nil, "a pool to put the image into (repeatable, or comma-separated)")
	f.BoolVar(&req.allPools, "all-pools", false, "every pool the API knows")
	f.StringVar(&req.image, "image", "", "a READY image's id (an upload, say) to copy from its node to the pools, instead of CATALOG_ID|URL")
	f.StringVar(&req.checksum, "checksum", "", "sha256:HEX or sha512:HEX of the URL's bytes (required with a URL)")
	f.StringVar(&req.name, "name", "", "the images' name (default: the catalog entry's, or the URL's file name)")
	f.IntVar(&req.maxParallel, "max-parallel", 0, "how many copies may read from one node at once (0: the API's default, 4)")
	f.BoolVar(&wait, "wait", false, "show each pool's copy until the distribution is READY (exit 0), PARTIAL, FAILED or CANCELLED (exit 1)")
	cmd.RegisterFlagCompletionFunc("pool", completePools(cfg))
	cmd.RegisterFlagCompletionFunc("image", completeImages(cfg))
	o.register(cmd)
	return cmd
}

func distributionsLs(cfg *clientConfig) *cobra.Command {
	return lister(cfg, "list the distributions, newest first", "/v1/distributions",
		[]string{"ID", "SOURCE", "STATUS", "READY", "FAILED", "FROM MIRROR", "AGE"},
		func(d api.Distribution) []string {
			return []string{d.ID, distSourceText(d), d.Status, countText(d), orDash(strings.Join(d.FailedPools, ",")),
				bytesText(d.MirrorBytes), ago(&d.CreatedAt)}
		})
}

func distributionsGet(cfg *clientConfig) *cobra.Command {
	return idCommand(cfg, "get ID", "show one distribution and each pool's copy", "the distribution's ID", nil, completeDistributions(cfg),
		func(cmd *cobra.Command, c *conn, id string, o output) error {
			return getAndDescribe(cmd, c, distributionURL(id), o, describeDistribution)
		})
}

func distributionsRm(cfg *clientConfig) *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID",
		Aliases: []string{"remove", "delete", "cancel"},
		Short:   "cancel a running distribution, or forget one that ended (its images stay)",
		Long: "Cancels a RUNNING distribution: the copies in flight are cancelled (their partial data is\n" +
			"removed), the finished ones stay. A distribution that ended is forgotten; its images stay\n" +
			"('cloudimages images rm' removes them).",
		Args:              exactArgs(1, "the distribution's ID"),
		ValidArgsFunction: completeDistributions(cfg),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cfg.client(cmd)
			if err != nil {
				return err
			}
			id := args[0]
			status, err := c.Call(cmd.Context(), http.MethodDelete, distributionURL(id), nil, nil)
			switch {
			case err != nil:
				return c.explain(err)
			case status == http.StatusAccepted:
				fmt.Fprintf(cmd.OutOrStdout(), "%s: cancelling the copies in flight; the finished ones stay. Follow it with: cloudimages distributions wait %s\n", id, id)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "%s: forgotten; its images stay in their pools\n", id)
			}
			return nil
		},
	}
}

func distributionsWait(cfg *clientConfig) *cobra.Command {
	return idCommand(cfg, "wait ID", "show each pool's copy until the distribution is READY (exit 0), PARTIAL, FAILED or CANCELLED (exit 1)",
		"the distribution's ID", []string{"watch"}, completeDistributions(cfg), waitDistribution)
}

// waitDistribution follows a distribution until it has ended, each pool's
// copy on stderr, and prints how it ended: READY is a success; PARTIAL,
// FAILED and CANCELLED exit 1 with each failed pool's code and message.
// Ctrl-C stops following only.
func waitDistribution(cmd *cobra.Command, c *conn, id string, o output) error {
	view := newDistView(cmd.ErrOrStderr())
	raw, d, err := c.pollDistribution(cmd.Context(), id, func(d api.Distribution) {
		view.show(d, c.offlineNodes(cmd.Context(), d))
	})
	view.end()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Stopped following distribution %s; its copies go on.\n"+
			"  follow it:  cloudimages distributions wait %s\n"+
			"  cancel it:  cloudimages distributions rm %s\n", id, id, id)
		return errInterrupted
	}
	if err != nil {
		return err
	}
	if o.json() {
		if err := printJSON(cmd.OutOrStdout(), raw); err != nil {
			return err
		}
	}
	if d.Status == "READY" {
		if !o.json() {
			fmt.Fprintf(cmd.OutOrStdout(), "distribution %s READY: %s into %s pools, %s\n", d.ID, distSourceText(d), countText(d), sourcesText(d))
		}
		return nil
	}
	w := cmd.ErrOrStderr()
	fmt.Fprintf(w, "distribution %s %s: %s pools READY", d.ID, d.Status, countText(d))
	if d.Message != "" {
		fmt.Fprintf(w, "; %s", d.Message)
	}
	fmt.Fprintln(w)
	for _, g := range failedGroups(d) {
		fmt.Fprintf(w, "  %s %s: %s\n", plural(len(g.pools), "pool", "pools"), strings.Join(g.pools, ", "), g.why)
	}
	if d.Status == "PARTIAL" || d.Status == "FAILED" {
		fmt.Fprintf(w, "Fix the cause, then run the same create again: it copies only the failed pools.\n")
	}
	return silentExit(1)
}

// failedGroup is the pools whose copies did not end READY the same way.
type failedGroup struct {
	pools []string
	why   string // status, and the error's code and message
}

// failedGroups groups the copies not READY by how they ended, in the
// order of the copies: a cause shared by every pool (no internet, say) is
// printed once, not once a pool.
func failedGroups(d api.Distribution) []failedGroup {
	var groups []failedGroup
	at := map[string]int{}
	for _, cp := range d.Copies {
		if cp.Status == "READY" {
			continue
		}
		why := cp.Status
		if cp.Error != nil {
			why += ": " + cp.Error.Code + ": " + cp.Error.Message
		}
		if i, ok := at[why]; ok {
			groups[i].pools = append(groups[i].pools, cp.PoolID)
			continue
		}
		at[why] = len(groups)
		groups = append(groups, failedGroup{pools: []string{cp.PoolID}, why: why})
	}
	return groups
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// pollDistribution asks for the distribution every distPollEvery, handing
// each answer to show, until it is no longer RUNNING. An API that does not
// answer (restarting, say) is asked again for up to maxStreamLosses polls;
// an API error (the distribution is gone, the token is wrong) ends it.
func (c *conn) pollDistribution(ctx context.Context, id string, show func(api.Distribution)) (json.RawMessage, api.Distribution, error) {
	losses := 0
	for {
		var raw json.RawMessage
		_, err := c.Call(ctx, http.MethodGet, distributionURL(id), nil, &raw)
		var d api.Distribution
		switch {
		case err == nil:
			if err := json.Unmarshal(raw, &d); err != nil {
				return nil, d, fmt.Errorf("the API answered a distribution this client cannot read: %w", err)
			}
			losses = 0
			show(d)
			if d.Status != "RUNNING" {
				return raw, d, nil
			}
		case ctx.Err() != nil:
			return nil, d, ctx.Err()
		default:
			if _, ok := fault.As(err); ok {
				return nil, d, err
			}
			if losses++; losses > maxStreamLosses {
				return nil, d, fmt.Errorf("lost distribution %s: %w", id, c.explain(err))
			}
		}
		select {
		case <-ctx.Done():
			return nil, d, ctx.Err()
		case <-time.After(distPollEvery):
		}
	}
}

// distView shows a distribution's copies as they move: on a terminal a
// block of lines, one a pool, drawn over at each poll; elsewhere a line a
// pool when its copy's status or source changes, and at most one every few
// seconds while it moves.
type distView struct {
	w     io.Writer
	tty   bool
	drawn int // lines of the block drawn last, to draw over
	every time.Duration
	last  map[string]copyLine
}

type copyLine struct {
	key  string // status and source: a change is printed at once
	done int64  // bytes done: a copy that waits is not printed again
	at   time.Time
}

func newDistView(w io.Writer) *distView {
	return &distView{w: w, tty: isTerminal(w), every: 2 * time.Second, last: map[string]copyLine{}}
}

// offlineNodes are the nodes that copies in flight run on and that the
// API reports offline, with when each was last seen: a copy on a node that
// died shows no bytes moving and would otherwise look merely slow. Any
// error asking for the nodes shows none.
func (c *conn) offlineNodes(ctx context.Context, d api.Distribution) map[string]*time.Time {
	used := map[string]bool{}
	for _, cp := range d.Copies {
		if cp.NodeID != "" && !copyEnded(cp) {
			used[cp.NodeID] = true
		}
	}
	if len(used) == 0 {
		return nil
	}
	var page struct {
		Items []api.Node `json:"items"`
	}
	if err := c.get(ctx, "/v1/nodes", &page); err != nil {
		return nil
	}
	off := map[string]*time.Time{}
	for _, n := range page.Items {
		if used[n.ID] && n.Status == "offline" {
			off[n.ID] = n.LastSeenAt
		}
	}
	return off
}

// copyEnded says whether a copy is READY, FAILED or CANCELLED.
func copyEnded(cp api.DistributionCopy) bool {
	return cp.Status == "READY" || cp.Status == "FAILED" || cp.Status == "CANCELLED"
}

func (v *distView) show(d api.Distribution, offline map[string]*time.Time) {
	if v.tty {
		if v.drawn > 0 {
			fmt.Fprintf(v.w, "\x1b[%dA", v.drawn) // back to the block's first line
		}
		head := fmt.Sprintf("%s  %s pools READY", d.Status, countText(d))
		if d.MirrorBytes > 0 { // counted once a copy from the mirror ends
			head += "  mirror read " + bytesText(d.MirrorBytes)
		}
		lines := []string{head}
		width := 0 // of the pool ids, so that the bars line up
		for _, cp := range d.Copies {
			width = max(width, len(cp.PoolID))
		}
		for _, cp := range d.Copies {
			line := copyText(cp, true, offline)
			lines = append(lines, "  "+cp.PoolID+strings.Repeat(" ", width-len(cp.PoolID))+strings.TrimPrefix(line, cp.PoolID))
		}
		for _, l := range lines {
			fmt.Fprintf(v.w, "\x1b[2K%s\n", l)
		}
		v.drawn = len(lines)
		return
	}
	for _, cp := range d.Copies {
		key, done := cp.Status+" "+cp.Source, int64(0)
		if _, off := offline[cp.NodeID]; off && !copyEnded(cp) {
			key += " offline" // said at once, not after the next bytes
		}
		if cp.Progress != nil {
			done = cp.Progress.BytesDone
		}
		prev, seen := v.last[cp.PoolID]
		if seen && prev.key == key && (prev.done == done || time.Since(prev.at) < v.every) {
			continue
		}
		v.last[cp.PoolID] = copyLine{key: key, done: done, at: time.Now()}
		fmt.Fprintf(v.w, "%s\n", copyText(cp, false, offline))
	}
}

func (v *distView) end() {}

// copyText is one pool's copy for people: the pool, the image's progress
// as `images wait` shows it, and where the bytes come from; a copy in
// flight on a node the API reports offline says so. With bar, a bar of the
// bytes done leads the progress.
func copyText(cp api.DistributionCopy, bar bool, offline map[string]*time.Time) string {
	img := api.Image{ID: cp.ImageID, Status: orDash(cp.Status), NodeID: cp.NodeID}
	if cp.Progress != nil {
		img.Progress = *cp.Progress
	}
	parts := []string{cp.PoolID}
	if bar {
		parts = append(parts, barText(img.Progress.BytesDone, img.Progress.BytesTotal, cp.Status == "READY"))
	}
	parts = append(parts, progressText(img, true))
	if seen, off := offline[cp.NodeID]; off && !copyEnded(cp) {
		parts = append(parts, "node "+cp.NodeID+" OFFLINE (last seen "+ago(seen)+" ago: see 'cloudimages nodes ls')")
	}
	switch {
	case cp.Adopted:
		parts = append(parts, "(already in the pool)")
	case cp.Source != "":
		parts = append(parts, "from "+cp.Source)
	}
	if cp.Error != nil {
		// The code only: the message, often long, is printed once at the
		// end, with each failed pool's.
		parts = append(parts, cp.Error.Code)
	}
	return strings.Join(parts, "  ")
}

// barText is a bar of done out of total, 20 wide; full once done.
func barText(done, total int64, full bool) string {
	const width = 20
	n := 0
	switch {
	case full:
		n = width
	case total > 0:
		n = int(done * width / total)
	}
	n = min(max(n, 0), width)
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
}

// countText is "READY/ALL": the copies READY out of the distribution's.
func countText(d api.Distribution) string {
	ready := 0
	for _, cp := range d.Copies {
		if cp.Status == "READY" {
			ready++
		}
	}
	return strconv.Itoa(ready) + "/" + strconv.Itoa(len(d.Copies))
}

// sourcesText says where the copies' bytes came from: how many from the
// mirror, how many from peers, how many adopted.
func sourcesText(d api.Distribution) string {
	var mirror, peers, adopted int
	for _, cp := range d.Copies {
		switch {
		case cp.Adopted:
			adopted++
		case cp.Source == "mirror":
			mirror++
		case strings.HasPrefix(cp.Source, "node:"):
			peers++
		}
	}
	s := fmt.Sprintf("%d from the mirror (%s read), %d from peers", mirror, bytesText(d.MirrorBytes), peers)
	if d.Source.ImageID != "" {
		s = fmt.Sprintf("%d from peers", peers) // no mirror: the image's node was the first source
	}
	if adopted > 0 {
		s += fmt.Sprintf(", %d already there", adopted)
	}
	return s
}

// distSourceText is the distribution's source: a catalog entry, an image
// or a name.
func distSourceText(d api.Distribution) string {
	switch {
	case d.Source.CatalogID != "":
		return d.Source.CatalogID
	case d.Source.ImageID != "":
		return fmt.Sprintf("image %s (%s)", d.Source.ImageID, orDash(d.Source.Name))
	case d.Source.Name != "":
		return d.Source.Name
	}
	return orDash(d.Source.URL)
}

// distPoolsText is the pools asked for.
func distPoolsText(d api.Distribution) string {
	if d.AllPools {
		return "all pools"
	}
	return "pools " + strings.Join(d.PoolIDs, ", ")
}

// describeDistribution prints one distribution for people: its fields,
// then a table of its copies.
func describeDistribution(w io.Writer, d api.Distribution) error {
	src := distSourceText(d)
	if d.Source.URL != "" {
		src += " (" + d.Source.URL + ")"
	}
	fields := [][2]string{
		{"ID", d.ID}, {"Status", d.Status}, {"Source", src}, {"Checksum", d.Checksum}, {"Pools", distPoolsText(d)},
		{"Ready", countText(d)}, {"From mirror", bytesText(d.MirrorBytes)}, {"Max parallel", strconv.Itoa(d.MaxParallel)},
		{"Failed pools", strings.Join(d.FailedPools, ", ")}, {"Message", d.Message}, {"Workflow", d.WorkflowID},
		{"Created", d.CreatedAt.Format(time.RFC3339)}, {"Updated", d.UpdatedAt.Format(time.RFC3339)},
	}
	rows := make([][]string, 0, len(fields))
	for _, f := range fields {
		if f[1] != "" {
			rows = append(rows, []string{f[0] + ":", f[1]})
		}
	}
	if err := printTable(w, nil, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	rows = rows[:0]
	for _, cp := range d.Copies {
		from := orDash(cp.Source)
		if cp.Adopted {
			from = "already there"
		}
		why := "-"
		if cp.Error != nil {
			why = cp.Error.Code + ": " + cp.Error.Message
		}
		img := api.Image{Status: orDash(cp.Status)}
		if cp.Progress != nil {
			img.Progress = *cp.Progress
		}
		rows = append(rows, []string{cp.PoolID, orDash(cp.ImageID), statusText(img), orDash(cp.NodeID), from,
			bytesText(cp.BytesFromMirror + cp.BytesFromPeers), why})
	}
	return printTable(w, []string{"POOL", "IMAGE", "STATUS", "NODE", "FROM", "COPIED", "ERROR"}, rows)
}

// distributionURL is a distribution's path in the API.
func distributionURL(id string) string { return "/v1/distributions/" + url.PathEscape(id) }

func completeDistributions(cfg *clientConfig) cobra.CompletionFunc {
	return completer(cfg, "/v1/distributions", func(d api.Distribution) (string, string) {
		return d.ID, fmt.Sprintf("%s into %s, %s", distSourceText(d), distPoolsText(d), d.Status)
	})
}
