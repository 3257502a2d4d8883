package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/workflows"
)

// There is no Docker engine here, so these tests check docker-compose.yml
// and the Dockerfile against the binary and the documented configuration:
// a typo in a variable or a port would otherwise only show in production.

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Expose      []string          `yaml:"expose"`
	Volumes     []string          `yaml:"volumes"`
}

const (
	cloudimagesImage = "cloudimages:latest"
	// agentImage is the Dockerfile's agent target: Debian with qemu-img and xz.
	agentImage = "cloudimages-agent:latest"
)

// runsCloudimages: the service runs one of the Dockerfile's images.
func (s composeService) runsCloudimages() bool {
	return s.Image == cloudimagesImage || s.Image == agentImage
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// servicesRunning returns the names of the services that run `cloudimages role`.
func (f composeFile) servicesRunning(role string) []string {
	var names []string
	for name, s := range f.Services {
		if s.runsCloudimages() && len(s.Command) > 0 && s.Command[0] == role {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func (f composeFile) service(t *testing.T, name string) composeService {
	t.Helper()
	s, ok := f.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

// standIn is what interpolate gives a required variable: long enough to
// pass as a token.
const standIn = "stand-in-value-0123456789"

// interpolate resolves compose's ${VAR:-default} and ${VAR:?message} (the
// latter to a stand-in value) and $$.
func interpolate(v string) string {
	re := regexp.MustCompile(`\$\{[A-Z_]+(:-([^}]*)|:\?[^}]*)?\}`)
	v = re.ReplaceAllStringFunc(v, func(m string) string {
		if _, def, ok := strings.Cut(m, ":-"); ok {
			return strings.TrimSuffix(def, "}")
		}
		return standIn
	})
	return strings.ReplaceAll(v, "$$", "$")
}

func TestComposeHasTheProductionTopology(t *testing.T) {
	f := loadCompose(t)
	if got := f.servicesRunning("api"); len(got) != 1 {
		t.Errorf("API services = %v, want one", got)
	}
	if got := f.servicesRunning("worker"); len(got) != 2 {
		t.Errorf("worker services = %v, want two", got)
	}
	if got := f.servicesRunning("nodeagent"); len(got) != 2 {
		t.Errorf("node agent services = %v, want two", got)
	}
	for name, image := range map[string]string{"postgres": "postgres:", "temporal": "temporalio/auto-setup:", "temporal-ui": "temporalio/ui:"} {
		if s := f.service(t, name); !strings.HasPrefix(s.Image, image) {
			t.Errorf("service %s runs %q, want %s…", name, s.Image, image)
		}
	}
	if f.service(t, "api").Build == nil {
		t.Error("the api service does not build the image from the Dockerfile")
	}
}

// TestComposeCommandsAndVariablesExist checks that every cloudimages
// service runs a real subcommand and that every flag and variable it sets
// is one that subcommand's --help lists, and, when the README's
// configuration table has it, one documented for that subcommand.
func TestComposeCommandsAndVariablesExist(t *testing.T) {
	f := loadCompose(t)
	documented := documentedVariables(t)
	bin := testenv.Binary(t)
	for name, s := range f.Services {
		if !s.runsCloudimages() {
			continue
		}
		t.Run(name, func(t *testing.T) {
			if len(s.Command) == 0 {
				t.Fatal("no command: the image's default is --help")
			}
			role := s.Command[0]
			if !slices.Contains([]string{"api", "worker", "nodeagent", "node-token"}, role) {
				t.Fatalf("command %q is not a cloudimages server subcommand (or node-token)", role)
			}
			out, err := exec.Command(bin, role, "--help").CombinedOutput()
			if err != nil {
				t.Fatalf("cloudimages %s --help: %v\n%s", role, err, out)
			}
			help := string(out)
			for _, arg := range s.Command[1:] {
				if flag, ok := strings.CutPrefix(arg, "--"); ok {
					flag, _, _ = strings.Cut(flag, "=")
					if !strings.Contains(help, "--"+flag+" ") {
						t.Errorf("flag --%s is not in `cloudimages %s --help`", flag, role)
					}
				}
			}
			if len(s.Environment) == 0 {
				t.Error("no environment: the service would run on laptop defaults")
			}
			for env := range s.Environment {
				if !strings.Contains(help, "env "+env) {
					t.Errorf("variable %s is not in `cloudimages %s --help`", env, role)
				}
				if usedBy, ok := documented[env]; ok && !strings.Contains(usedBy, role) {
					t.Errorf("variable %s is documented for %q, not for %s", env, usedBy, role)
				}
			}
		})
	}
}

// documentedVariables reads the README's configuration table: variable → "used by".
func documentedVariables(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	row := regexp.MustCompile("^\\| `--[^|]*\\| `([A-Z_]+)`[^|]*\\|[^|]*\\|([^|]*)\\|")
	for _, line := range strings.Split(string(b), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			vars[m[1]] = strings.TrimSpace(m[2])
		}
	}
	if len(vars) < 10 {
		t.Fatalf("found %d variables in the README's configuration table; has its format changed?", len(vars))
	}
	return vars
}

func TestComposeAddressesAndPortsLineUp(t *testing.T) {
	f := loadCompose(t)
	for _, name := range append(f.servicesRunning("api"), append(f.servicesRunning("worker"), "temporal-ui")...) {
		env := f.service(t, name).Environment
		if got := env["TEMPORAL_ADDRESS"]; got != "temporal:7233" {
			t.Errorf("%s: TEMPORAL_ADDRESS = %q, want the temporal service, temporal:7233", name, got)
		}
	}
	pg := f.service(t, "postgres").Environment
	for _, name := range append(f.servicesRunning("api"), f.servicesRunning("worker")...) {
		u, err := url.Parse(interpolate(f.service(t, name).Environment["DATABASE_URL"]))
		if err != nil {
			t.Fatalf("%s: DATABASE_URL: %v", name, err)
		}
		pw, _ := u.User.Password()
		if u.Scheme != "postgres" || u.Hostname() != "postgres" || u.Path != "/"+pg["POSTGRES_DB"] ||
			u.User.Username() != pg["POSTGRES_USER"] || pw != interpolate(pg["POSTGRES_PASSWORD"]) {
			t.Errorf("%s: DATABASE_URL %s does not name the postgres service's database, user and password", name, u.Redacted())
		}
	}

	api := f.service(t, "api")
	_, apiPort, _ := net.SplitHostPort(api.Environment["CLOUDIMAGES_LISTEN"])
	if !slices.Contains(api.Ports, apiPort+":"+apiPort) {
		t.Errorf("api listens on %s but publishes %v", apiPort, api.Ports)
	}
	web, err := url.Parse(api.Environment["CLOUDIMAGES_TEMPORAL_WEB_URL"])
	if err != nil {
		t.Fatal(err)
	}
	ui := f.service(t, "temporal-ui")
	if len(ui.Ports) != 1 || !strings.HasPrefix(ui.Ports[0], "127.0.0.1:"+web.Port()+":") {
		t.Errorf("the API links Temporal Web at %s, temporal-ui publishes %v", web, ui.Ports)
	}
}

// TestComposeWorkersServeMetrics: every worker serves /metrics
// (--metrics-listen, whose variable TestComposeCommandsAndVariablesExist
// checks against `worker --help`) on an address other containers reach,
// on a port it exposes to the compose network and does not publish.
func TestComposeWorkersServeMetrics(t *testing.T) {
	f := loadCompose(t)
	for _, name := range f.servicesRunning("worker") {
		s := f.service(t, name)
		listen := s.Environment["CLOUDIMAGES_METRICS_LISTEN"]
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			t.Errorf("%s: CLOUDIMAGES_METRICS_LISTEN %q: %v", name, listen, err)
			continue
		}
		if host != "0.0.0.0" && host != "" {
			t.Errorf("%s: metrics on %s, which other containers cannot reach", name, listen)
		}
		if !slices.Contains(s.Expose, port) {
			t.Errorf("%s: metrics on port %s, which it does not expose (expose %v)", name, port, s.Expose)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s publishes %v on the host; its metrics are for the compose network", name, s.Ports)
		}
	}
}

// TestComposePublishesOnlyTheAPI: Temporal has no authentication, so its
// frontend (7233) must not be reachable from outside the host, and Temporal
// Web (8233) only on the host's loopback. Only the API, which has a token,
// is published on every address.
func TestComposePublishesOnlyTheAPI(t *testing.T) {
	f := loadCompose(t)
	apis := f.servicesRunning("api")
	for name, s := range f.Services {
		for _, p := range s.Ports {
			if slices.Contains(apis, name) {
				continue
			}
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q on every address of the host; bind it to 127.0.0.1 or do not publish it", name, p)
			}
			if strings.HasSuffix(p, ":7233") {
				t.Errorf("service %s publishes Temporal's frontend (%s), which has no authentication", name, p)
			}
		}
	}
}

// TestComposeRequiresItsSecrets: the database password and the tokens are
// required (${VAR:?message}), never defaulted (${VAR:-…}), which would run
// a production stack on a password anyone can read here. The API, which
// listens beyond loopback, is given a token.
func TestComposeRequiresItsSecrets(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"POSTGRES_PASSWORD", "CLOUDIMAGES_NODE_TOKEN", "CLOUDIMAGES_API_TOKEN"}
	for _, name := range secrets {
		uses := regexp.MustCompile(`\$\{`+name+`(:[-?][^}]*)?\}`).FindAllString(string(b), -1)
		if len(uses) == 0 {
			t.Errorf("docker-compose.yml never uses ${%s}", name)
		}
		for _, u := range uses {
			if !strings.HasPrefix(u, "${"+name+":?") {
				t.Errorf("docker-compose.yml has %s: require it with ${%s:?message}", u, name)
			}
		}
	}
	f := loadCompose(t)
	for _, name := range f.servicesRunning("api") {
		env := f.service(t, name).Environment
		host, _, _ := net.SplitHostPort(env["CLOUDIMAGES_LISTEN"])
		if host != "127.0.0.1" && !strings.HasPrefix(env["CLOUDIMAGES_API_TOKEN"], "${CLOUDIMAGES_API_TOKEN:?") {
			t.Errorf("%s listens on %s without a required CLOUDIMAGES_API_TOKEN: the API refuses to start so", name, env["CLOUDIMAGES_LISTEN"])
		}
	}
}

// registration is what the register service posts.
type registration struct {
	Nodes []regNode
	Pools []regPool
}

type regNode struct{ ID, Address string }

type regPool struct {
	ID      string
	Shared  bool
	NodeIDs []string `json:"node_ids"`
}

func registered(t *testing.T, f composeFile) registration {
	t.Helper()
	script := strings.Join(f.service(t, "register").Command, "\n")
	var r registration
	for _, m := range regexp.MustCompile(`post (/v1/\w+) '(\{.*\})'`).FindAllStringSubmatch(script, -1) {
		var err error
		switch m[1] {
		case "/v1/nodes":
			var n regNode
			err = json.Unmarshal([]byte(m[2]), &n)
			r.Nodes = append(r.Nodes, n)
		case "/v1/pools":
			var p regPool
			err = json.Unmarshal([]byte(m[2]), &p)
			r.Pools = append(r.Pools, p)
		}
		if err != nil {
			t.Fatalf("register posts %s: %v", m[2], err)
		}
	}
	return r
}

func TestComposeRegistersTheAgentsAndTheirPools(t *testing.T) {
	f := loadCompose(t)
	r := registered(t, f)
	agents := f.servicesRunning("nodeagent")
	if len(r.Nodes) != len(agents) {
		t.Fatalf("register posts %d nodes, the file runs %d agents", len(r.Nodes), len(agents))
	}
	poolsOf := map[string]map[string]string{}  // node → pool → dir
	volumeAt := map[string]map[string]string{} // node → dir → volume
	for _, n := range r.Nodes {
		s := f.service(t, n.ID)
		if s.Command[0] != "nodeagent" || s.Environment["CLOUDIMAGES_NODE_ID"] != n.ID {
			t.Errorf("node %s: its service does not run an agent with CLOUDIMAGES_NODE_ID=%s", n.ID, n.ID)
		}
		_, port, _ := net.SplitHostPort(s.Environment["CLOUDIMAGES_LISTEN"])
		if n.Address != n.ID+":"+port || !slices.Contains(s.Expose, port) {
			t.Errorf("node %s registered at %s; its agent listens on %s and exposes %v", n.ID, n.Address, port, s.Expose)
		}
		poolsOf[n.ID], volumeAt[n.ID] = map[string]string{}, map[string]string{}
		for _, spec := range strings.Split(s.Environment["CLOUDIMAGES_POOLS"], ",") {
			id, dir, _ := strings.Cut(spec, "=")
			poolsOf[n.ID][id] = dir
		}
		for _, v := range s.Volumes {
			vol, dir, _ := strings.Cut(v, ":")
			if _, named := f.Volumes[vol]; !named {
				t.Errorf("node %s mounts %q, not a named volume", n.ID, vol)
			}
			volumeAt[n.ID][dir] = vol
		}
	}
	var shared int
	for _, p := range r.Pools {
		volumes := map[string]bool{}
		for _, node := range p.NodeIDs {
			dir, ok := poolsOf[node][p.ID]
			if !ok {
				t.Errorf("pool %s is assigned to %s, whose agent has no --pool %s", p.ID, node, p.ID)
				continue
			}
			vol, ok := volumeAt[node][dir]
			if !ok {
				t.Errorf("pool %s on %s: %s is not on a volume", p.ID, node, dir)
			}
			volumes[vol] = true
		}
		if p.Shared {
			shared++
			if len(p.NodeIDs) < 2 || len(volumes) != 1 {
				t.Errorf("shared pool %s: nodes %v mount volumes %v, want one volume on two nodes", p.ID, p.NodeIDs, volumes)
			}
		}
	}
	if shared == 0 {
		t.Error("no shared pool is registered")
	}
	dockerfile, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "/var/lib/cloudimages") {
		t.Error("the Dockerfile does not create the pool mount points under /var/lib/cloudimages (owned by the runtime user)")
	}
}

func TestComposeRegistersTheSearchAttributes(t *testing.T) {
	f := loadCompose(t)
	script := strings.Join(f.service(t, "temporal-setup").Command, "\n")
	if !strings.Contains(script, "search-attribute create") || !strings.Contains(script, "--type Keyword") {
		t.Fatalf("temporal-setup does not create Keyword search attributes:\n%s", script)
	}
	for _, name := range workflows.SearchAttributeNames {
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(script) {
			t.Errorf("temporal-setup does not register %s", name)
		}
	}
}

func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := string(b)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(d, -1)); n < 2 {
		t.Errorf("the Dockerfile has %d stages, want a build stage and a runtime stage", n)
	}
	gomod, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	if want := "ARG GO_VERSION=" + string(goLine[1]) + "\n"; !strings.Contains(d, want) {
		t.Errorf("the Dockerfile lacks %q: the golang image must have go.mod's Go, it does not fetch a newer one", want)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/cloudimages", `ENTRYPOINT ["/usr/local/bin/cloudimages"]`, "USER "} {
		if !strings.Contains(d, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
}

// TestComposeAgentEnvironmentStartsAnAgent runs the binary with a node
// service's environment (its directories moved to a temp dir and its port
// to a free one): the agent must start and serve the pools the compose
// file gives it.
func TestComposeAgentEnvironmentStartsAnAgent(t *testing.T) {
	f := loadCompose(t)
	s := f.service(t, "node-1")
	root := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env := os.Environ()
	for k, v := range s.Environment {
		v = interpolate(v)
		switch k {
		case "CLOUDIMAGES_POOLS":
			v = strings.ReplaceAll(v, "=/", "="+root+"/")
		case "CLOUDIMAGES_LISTEN":
			v = addr
		case "CLOUDIMAGES_NODE_TOKEN_FILE":
			v = filepath.Join(root, v)
		}
		env = append(env, k+"="+v)
	}
	// The agent's credential comes from its one-shot node-1-token, run here
	// as compose runs it, with its output moved under root.
	if s.Environment["CLOUDIMAGES_NODE_TOKEN"] != "" || s.Environment["CLOUDIMAGES_NODE_TOKEN_FILE"] == "" {
		t.Fatalf("node-1 must read its own credential from CLOUDIMAGES_NODE_TOKEN_FILE, never get the cluster secret: %v", s.Environment)
	}
	tokenFile := filepath.Join(root, s.Environment["CLOUDIMAGES_NODE_TOKEN_FILE"])
	if err := os.MkdirAll(filepath.Dir(tokenFile), 0o755); err != nil {
		t.Fatal(err)
	}
	minter := f.service(t, "node-1-token")
	mint := exec.Command(testenv.Binary(t), minter.Command...)
	for i, arg := range mint.Args {
		if arg == s.Environment["CLOUDIMAGES_NODE_TOKEN_FILE"] {
			mint.Args[i] = tokenFile
		}
	}
	mint.Env = append(os.Environ(), "CLOUDIMAGES_NODE_TOKEN="+interpolate(minter.Environment["CLOUDIMAGES_NODE_TOKEN"]))
	if out, err := mint.CombinedOutput(); err != nil {
		t.Fatalf("node-1-token: %v\n%s", err, out)
	}
	for _, spec := range strings.Split(s.Environment["CLOUDIMAGES_POOLS"], ",") {
		_, dir, _ := strings.Cut(spec, "=")
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(testenv.Binary(t), s.Command...)
	cmd.Env = env
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := agentclient.New(addr, nodeauth.Credential(standIn, "node-1"))
	var h agentclient.Health
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var err error
		h, err = c.Health(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent with node-1's environment does not answer: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var pools []string
	for _, p := range h.Pools {
		pools = append(pools, p.ID)
	}
	slices.Sort(pools)
	if h.NodeID != "node-1" || fmt.Sprint(pools) != "[local-1 nfs-01]" {
		t.Errorf("health = node %s, pools %v; want node-1 with local-1 and nfs-01", h.NodeID, pools)
	}
}

// dockerStages splits the Dockerfile into its stages, by name ("" for an
// unnamed one), each with its FROM image and its lines, in order.
type dockerStage struct{ name, from, body string }

func dockerStages(t *testing.T) []dockerStage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	from := regexp.MustCompile(`^FROM (\S+)(?: AS (\S+))?$`)
	for _, line := range strings.Split(string(b), "\n") {
		if m := from.FindStringSubmatch(line); m != nil {
			stages = append(stages, dockerStage{name: m[2], from: m[1]})
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].body += line + "\n"
		}
	}
	return stages
}

// TestDockerfileAgentTargetCarriesTheTools: the node agent runs qemu-img
// and xz, so its image is the Dockerfile's Debian `agent` target, which
// installs them and runs as a non-root user; the API and the workers keep
// the distroless default (the last stage), and compose's agents build the
// agent target.
func TestDockerfileAgentTargetCarriesTheTools(t *testing.T) {
	stages := dockerStages(t)
	var agent *dockerStage
	for i := range stages {
		if stages[i].name == "agent" {
			agent = &stages[i]
		}
	}
	if agent == nil {
		t.Fatal("the Dockerfile has no `agent` stage for the node agent")
	}
	if !strings.HasPrefix(agent.from, "debian:") {
		t.Errorf("the agent stage is FROM %s, want a small Debian (debian:…-slim)", agent.from)
	}
	install := regexp.MustCompile(`apt-get install[^\n]*`).FindString(strings.ReplaceAll(agent.body, "\\\n", " "))
	for _, pkg := range []string{"qemu-utils", "xz-utils", "--no-install-recommends"} {
		if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(pkg) + `(\s|$)`).MatchString(install) {
			t.Errorf("the agent stage's apt-get install (%q) lacks %s", install, pkg)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(agent.body)
	if user == nil || strings.HasPrefix(user[1], "root") || strings.HasPrefix(user[1], "0") {
		t.Errorf("the agent stage runs as %v, want a non-root USER", user)
	}
	for _, want := range []string{"/usr/local/bin/cloudimages", "/var/lib/cloudimages"} {
		if !strings.Contains(agent.body, want) {
			t.Errorf("the agent stage lacks %s", want)
		}
	}
	if last := stages[len(stages)-1]; !strings.HasPrefix(last.from, "gcr.io/distroless/") {
		t.Errorf("the default (last) stage is FROM %s, want distroless for the API and the workers", last.from)
	}

	f := loadCompose(t)
	for _, name := range f.servicesRunning("nodeagent") {
		s := f.service(t, name)
		build, _ := s.Build.(map[string]any)
		if s.Image != agentImage || build == nil || build["target"] != "agent" {
			t.Errorf("compose service %s runs image %s built %v, want %s built with target agent", name, s.Image, s.Build, agentImage)
		}
	}
	for _, role := range []string{"api", "worker"} {
		for _, name := range f.servicesRunning(role) {
			if s := f.service(t, name); s.Image != cloudimagesImage {
				t.Errorf("compose service %s runs %s, want the distroless %s", name, s.Image, cloudimagesImage)
			}
		}
	}
}
