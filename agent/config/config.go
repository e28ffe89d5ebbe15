package config

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
)

// Config is the one schema of the agent's configuration. Keys are the
// koanf tags; the YAML file, env (LANMESH_ + upper-case key with "." as
// "_") and flags all use them.
type Config struct {
	StateDir   string `koanf:"state_dir"`
	Socket     string `koanf:"socket"`
	TUNName    string `koanf:"tun_name"`
	ListenPort int    `koanf:"listen_port"`
	// Backend is the WireGuard implementation: auto (the kernel's when it
	// has WireGuard, else userspace), kernel or userspace.
	Backend string `koanf:"backend"`
	// WireGuardUAPI serves the userspace device's UAPI socket,
	// /var/run/wireguard/<tun_name>.sock (wireguard-go's text protocol).
	WireGuardUAPI  bool     `koanf:"wireguard_uapi"`
	MTU            int      `koanf:"mtu"`
	LogLevel       string   `koanf:"log_level"`
	MemoryLimitMiB int      `koanf:"memory_limit_mib"` // 0: no limit
	Offloads       Offloads `koanf:"offloads"`
	// MaxInflightPackets bounds the packets the data plane holds per
	// direction, so memory stays bounded on small routers.
	MaxInflightPackets int `koanf:"max_inflight_packets"`
	DNS                DNS `koanf:"dns"`
	// Join joins the mesh from config alone (OpenWrt's /etc/config/lanmesh),
	// as "lanmesh up" would; empty Join.LoginServer leaves joining to the CLI.
	Join Join `koanf:"join"`
	// NetworkConfig is OpenWrt's UCI network file, read to turn an
	// interface name in join.advertise_routes (e.g. "lan") into its prefix.
	NetworkConfig string `koanf:"network_config"`
	// CacheDir holds the netmap cache (netmap.json), rewritten at most
	// every 30 s while the netmap changes; "" is StateDir. OpenWrt's
	// package puts it in RAM (/tmp/lanmesh) to spare the flash.
	CacheDir string `koanf:"cache_dir"`
	// NetmapCacheMaxAge is the oldest netmap cache (cache_dir/netmap.json)
	// the agent restores at start, as a Go duration ("168h"); "0" never
	// restores it. Peers whose key has expired are never restored (S20).
	NetmapCacheMaxAge string `koanf:"netmap_cache_max_age"`
	// Web is the agent's web page (agent/webui), off by default.
	Web Web `koanf:"web"`
}

// NetmapCacheDir is where the netmap cache lives: cache_dir, or state_dir
// when that is empty.
func (c *Config) NetmapCacheDir() string {
	if c.CacheDir != "" {
		return c.CacheDir
	}
	return c.StateDir
}

// DefaultNetmapCacheMaxAge is a week: long enough to ride out a coord
// outage over a weekend or a holiday, short enough that a node revoked
// while this router was off does not come back from a months-old file.
const DefaultNetmapCacheMaxAge = 7 * 24 * time.Hour

// CacheMaxAge is netmap_cache_max_age parsed (validate has checked it);
// 0 means the cache is never restored.
func (c *Config) CacheMaxAge() time.Duration {
	d, err := parseMaxAge(c.NetmapCacheMaxAge)
	if err != nil {
		return 0 // fail closed; validate reports the bad value
	}
	return d
}

func parseMaxAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}

// Join is what "lanmesh up" would set, given in config instead: the agent
// applies it at start and on SIGHUP, without dropping tunnels.
type Join struct {
	LoginServer string `koanf:"login_server"`
	// AuthKeyFile holds a pre-auth key, read only while the node has not
	// joined yet; keeping the key out of the config and argv keeps it out
	// of "ps" and of LuCI.
	AuthKeyFile string `koanf:"auth_key_file"`
	Hostname    string `koanf:"hostname"`
	// AdvertiseRoutes is a comma-separated list of prefixes and UCI
	// interface names ("lan,198.18.9.0/24").
	AdvertiseRoutes  string `koanf:"advertise_routes"`
	AcceptRoutes     bool   `koanf:"accept_routes"`
	SNATSubnetRoutes bool   `koanf:"snat_subnet_routes"`
	// AdvertiseExitNode offers this node as an exit node (0.0.0.0/0 and
	// ::/0, approved on coord), as "lanmesh up --advertise-exit-node".
	AdvertiseExitNode bool `koanf:"advertise_exit_node"`
	// ExitNode sends internet traffic through this peer (name or mesh
	// IP); "" uses none. ExitNodeAllowLANAccess keeps directly connected
	// LANs outside the tunnel (docs/exit-nodes.md).
	ExitNode               string `koanf:"exit_node"`
	ExitNodeAllowLANAccess bool   `koanf:"exit_node_allow_lan_access"`
}

// DNS configures the mesh DNS server (agent/dns).
type DNS struct {
	Enabled bool `koanf:"enabled"`
	// Listen is where the server answers, UDP and TCP (port 0 picks one).
	Listen string `koanf:"listen"`
	// DnsmasqConf, when set, is a file the agent (re)writes with the
	// dnsmasq lines that forward the mesh domain to Listen.
	DnsmasqConf string `koanf:"dnsmasq_conf"`
	// DnsmasqReload is a command (split on blanks, no shell) run after
	// DnsmasqConf changed, e.g. "/etc/init.d/dnsmasq reload".
	DnsmasqReload string `koanf:"dnsmasq_reload"`
	// Upstreams are resolvers for everything else, comma-separated
	// (IP or IP:port); "" reads /etc/resolv.conf, which is never written.
	Upstreams string `koanf:"upstreams"`
	// PublishLeases publishes the DHCP names of LeasesFile inside the
	// advertised routes to permitted peers (<host>.<router>.<domain>).
	PublishLeases bool   `koanf:"publish_leases"`
	LeasesFile    string `koanf:"leases_file"`
}

// ResolvConf is where dns.upstreams = "" reads resolvers from (read-only).
const ResolvConf = "/etc/resolv.conf"

// ParseUpstreams parses dns.upstreams: comma-separated IP or IP:port.
func ParseUpstreams(s string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if ap, err := netip.ParseAddrPort(f); err == nil {
			out = append(out, ap)
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address or IP:port", f)
		}
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out, nil
}

// Offloads are the kernel offload switches; each has had kernel bugs, so
// each can be turned off.
type Offloads struct {
	TUN    bool `koanf:"tun"`
	UDPGSO bool `koanf:"udp_gso"`
	UDPGRO bool `koanf:"udp_gro"`
}

// DefaultSocket is where the agent's local API listens by default.
const DefaultSocket = "/var/run/lanmesh/lanmesh.sock"

// Defaults is the only place defaults live.
func Defaults() Config {
	return Config{
		StateDir:           "/var/lib/lanmesh",
		Socket:             DefaultSocket,
		TUNName:            "lanmesh0",
		ListenPort:         41641,
		Backend:            "auto",
		MTU:                1420,
		LogLevel:           "warn",
		MemoryLimitMiB:     38,
		Offloads:           Offloads{TUN: true, UDPGSO: true, UDPGRO: true},
		MaxInflightPackets: 64,
		DNS: DNS{
			Enabled:    true,
			Listen:     "127.0.0.1:53535",
			LeasesFile: "/tmp/dhcp.leases", // OpenWrt's dnsmasq
		},
		Join:              Join{SNATSubnetRoutes: true},
		NetworkConfig:     "/etc/config/network",
		NetmapCacheMaxAge: "168h", // DefaultNetmapCacheMaxAge
	}
}

// maxFileBytes bounds the config file; real ones are a few hundred bytes.
const maxFileBytes = 1 << 20

// Flag is one command-line flag the user actually set.
type Flag struct {
	Key   string // schema key, e.g. "tun_name"
	Name  string // as typed, e.g. "--tun"
	Value string
}

// Sources are the inputs of Load above the defaults.
type Sources struct {
	File  string   // YAML file path; "" for none
	UCI   string   // UCI file path (/etc/config/lanmesh); "" for none
	Env   []string // KEY=VALUE, usually os.Environ()
	Flags []Flag
}

// Load merges defaults < YAML file < UCI file < env < flags and validates
// the result.
func Load(src Sources) (*Config, error) {
	var fileBytes, uciBytes []byte
	if src.File != "" {
		b, err := readFile(src.File)
		if err != nil {
			return nil, err
		}
		fileBytes = b
	}
	if src.UCI != "" {
		b, err := readFile(src.UCI)
		if err != nil {
			return nil, err
		}
		uciBytes = b
	}
	c, err := load(src, fileBytes, uciBytes)
	if err != nil {
		return nil, err
	}
	// Interface names in join.advertise_routes must resolve now, so a typo
	// stops the agent with the file and line instead of a silent no-route.
	if _, err := c.AdvertiseRoutes(); err != nil {
		return nil, err
	}
	return c, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, maxFileBytes)
	}
	return b, nil
}

// kind is the type of a schema key, taken from the defaults.
type kind int

const (
	kString kind = iota
	kInt
	kBool
)

// schemaKeys maps each flattened key to its kind.
func schemaKeys() map[string]kind {
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(defaultsMap(), "."), nil); err != nil {
		panic(err) // defaults are static
	}
	out := map[string]kind{}
	for key, v := range k.All() {
		switch v.(type) {
		case string:
			out[key] = kString
		case int:
			out[key] = kInt
		case bool:
			out[key] = kBool
		}
	}
	return out
}

func defaultsMap() map[string]any { return toMap(Defaults()) }

// bind maps each schema key to the field of c it sets: the one list of
// keys. Filling fields through it instead of koanf's Unmarshal keeps
// mapstructure's reflection out of the router binary (tens of KiB of the
// 12 MiB budget).
func bind(c *Config) map[string]any {
	return map[string]any{
		"state_dir":                       &c.StateDir,
		"socket":                          &c.Socket,
		"tun_name":                        &c.TUNName,
		"listen_port":                     &c.ListenPort,
		"backend":                         &c.Backend,
		"wireguard_uapi":                  &c.WireGuardUAPI,
		"mtu":                             &c.MTU,
		"log_level":                       &c.LogLevel,
		"memory_limit_mib":                &c.MemoryLimitMiB,
		"offloads.tun":                    &c.Offloads.TUN,
		"offloads.udp_gso":                &c.Offloads.UDPGSO,
		"offloads.udp_gro":                &c.Offloads.UDPGRO,
		"max_inflight_packets":            &c.MaxInflightPackets,
		"dns.enabled":                     &c.DNS.Enabled,
		"dns.listen":                      &c.DNS.Listen,
		"dns.dnsmasq_conf":                &c.DNS.DnsmasqConf,
		"dns.dnsmasq_reload":              &c.DNS.DnsmasqReload,
		"dns.upstreams":                   &c.DNS.Upstreams,
		"dns.publish_leases":              &c.DNS.PublishLeases,
		"dns.leases_file":                 &c.DNS.LeasesFile,
		"join.login_server":               &c.Join.LoginServer,
		"join.auth_key_file":              &c.Join.AuthKeyFile,
		"join.hostname":                   &c.Join.Hostname,
		"join.advertise_routes":           &c.Join.AdvertiseRoutes,
		"join.accept_routes":              &c.Join.AcceptRoutes,
		"join.snat_subnet_routes":         &c.Join.SNATSubnetRoutes,
		"join.advertise_exit_node":        &c.Join.AdvertiseExitNode,
		"join.exit_node":                  &c.Join.ExitNode,
		"join.exit_node_allow_lan_access": &c.Join.ExitNodeAllowLANAccess,
		"network_config":                  &c.NetworkConfig,
		"cache_dir":                       &c.CacheDir,
		"netmap_cache_max_age":            &c.NetmapCacheMaxAge,
		"web.enabled":                     &c.Web.Enabled,
		"web.listen":                      &c.Web.Listen,
		"web.allow_any":                   &c.Web.AllowAny,
		"web.hosts":                       &c.Web.Hosts,
		"web.token_file":                  &c.Web.TokenFile,
	}
}

// toMap flattens c into its schema keys.
func toMap(d Config) map[string]any {
	out := map[string]any{}
	for key, p := range bind(&d) {
		switch v := p.(type) {
		case *string:
			out[key] = *v
		case *int:
			out[key] = *v
		case *bool:
			out[key] = *v
		}
	}
	return out
}

// EnvName is the environment variable for a schema key.
func EnvName(key string) string {
	return "LANMESH_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func load(src Sources, fileBytes, uciBytes []byte) (*Config, error) {
	keys := schemaKeys()
	origin := map[string]string{}
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(defaultsMap(), "."), nil); err != nil {
		return nil, fmt.Errorf("load defaults: %w", err)
	}
	for key := range keys {
		origin[key] = "default"
	}

	if src.File != "" {
		layer, err := fileLayer(src.File, fileBytes, keys)
		if err != nil {
			return nil, err
		}
		fileOrigin := map[string]string{}
		for key := range layer {
			fileOrigin[key] = "from " + src.File
		}
		if err := mergeEach(k, layer, fileOrigin, origin); err != nil {
			return nil, err
		}
	}

	if src.UCI != "" {
		layer, uciOrigin, err := uciLayer(src.UCI, uciBytes, keys)
		if err != nil {
			return nil, err
		}
		if err := mergeEach(k, layer, uciOrigin, origin); err != nil {
			return nil, err
		}
	}

	envLayer := map[string]any{}
	envOrigin := map[string]string{}
	envByName := map[string]string{}
	for key := range keys {
		envByName[EnvName(key)] = key
	}
	for _, kv := range src.Env {
		name, val, ok := strings.Cut(kv, "=")
		key, known := envByName[name]
		if !ok || !known {
			continue // other LANMESH_* vars belong to the CLI
		}
		from := "from env " + name
		v, err := convert(key, val, keys[key], from)
		if err != nil {
			return nil, err
		}
		envLayer[key] = v
		envOrigin[key] = from
	}
	if err := mergeEach(k, envLayer, envOrigin, origin); err != nil {
		return nil, err
	}

	flagLayer := map[string]any{}
	flagOrigin := map[string]string{}
	for _, f := range src.Flags {
		kd, ok := keys[f.Key]
		if !ok {
			return nil, fmt.Errorf("flag %s: unknown config key %q", f.Name, f.Key)
		}
		from := "from flag " + f.Name
		v, err := convert(f.Key, f.Value, kd, from)
		if err != nil {
			return nil, err
		}
		flagLayer[f.Key] = v
		flagOrigin[f.Key] = from
	}
	if err := mergeEach(k, flagLayer, flagOrigin, origin); err != nil {
		return nil, err
	}

	var c Config
	for key, p := range bind(&c) {
		switch v := p.(type) {
		case *string:
			*v = k.String(key)
		case *int:
			*v = k.Int(key)
		case *bool:
			*v = k.Bool(key)
		}
	}
	if err := c.validate(origin); err != nil {
		return nil, err
	}
	return &c, nil
}

func mergeEach(k *koanf.Koanf, layer map[string]any, layerOrigin, origin map[string]string) error {
	for key, from := range layerOrigin {
		origin[key] = from
	}
	return k.Load(confmap.Provider(layer, "."), nil)
}

// fileLayer parses the YAML file into flattened, typed keys. Unknown keys
// are errors: a typo must not silently fall back to a default.
func fileLayer(path string, b []byte, keys map[string]kind) (map[string]any, error) {
	from := "from " + path
	if len(strings.TrimSpace(string(b))) == 0 {
		return map[string]any{}, nil
	}
	raw, err := yaml.Parser().Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("config file %s: not valid YAML: %w", path, err)
	}
	fk := koanf.New(".")
	if err := fk.Load(confmap.Provider(raw, ""), nil); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	flat := fk.All()
	names := make([]string, 0, len(flat))
	for key := range flat {
		names = append(names, key)
	}
	sort.Strings(names)
	out := map[string]any{}
	for _, key := range names {
		kd, ok := keys[key]
		if !ok {
			return nil, fmt.Errorf("%s: unknown key (%s); known keys: %s", key, from, knownKeys(keys))
		}
		v, err := fromYAML(key, flat[key], kd, from)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	return out, nil
}

func knownKeys(keys map[string]kind) string {
	names := make([]string, 0, len(keys))
	for key := range keys {
		names = append(names, key)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func fromYAML(key string, v any, kd kind, from string) (any, error) {
	switch kd {
	case kString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case kInt:
		switch n := v.(type) {
		case int:
			return n, nil
		case int64:
			if n >= -1<<31 && n < 1<<31 {
				return int(n), nil
			}
		case uint64:
			if n < 1<<31 {
				return int(n), nil
			}
		}
	case kBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s: %s is not a %s (%s)", key, show(v), kindName(kd), from)
}

func show(v any) string {
	s := fmt.Sprintf("%v", v)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

func kindName(kd kind) string {
	switch kd {
	case kInt:
		return "number"
	case kBool:
		return "boolean (true or false)"
	}
	return "string"
}

func convert(key, val string, kd kind, from string) (any, error) {
	switch kd {
	case kInt:
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("%s: %s is not a number (%s)", key, show(val), from)
		}
		return n, nil
	case kBool:
		b, err := strconv.ParseBool(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("%s: %s is not a boolean (true or false) (%s)", key, show(val), from)
		}
		return b, nil
	}
	return val, nil
}

func (c *Config) validate(origin map[string]string) error {
	var errs []error
	bad := func(key string, v any, why string) {
		errs = append(errs, fmt.Errorf("%s: %s %s (%s)", key, show(v), why, origin[key]))
	}
	if c.StateDir == "" {
		bad("state_dir", c.StateDir, "must not be empty")
	}
	if c.Socket == "" {
		bad("socket", c.Socket, "must not be empty")
	}
	if !validIfName(c.TUNName) {
		bad("tun_name", c.TUNName, "is not a valid interface name (1-15 characters, no spaces or /)")
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		bad("listen_port", c.ListenPort, "is not a UDP port (0-65535, 0 picks one)")
	}
	switch c.Backend {
	case "auto", "kernel", "userspace":
	default:
		bad("backend", c.Backend, "is not one of auto, kernel, userspace")
	}
	if c.MTU < 1280 || c.MTU > 65455 {
		bad("mtu", c.MTU, "is out of range (1280-65455; IPv6 needs at least 1280)")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", c.LogLevel, "is not one of debug, info, warn, error")
	}
	if c.MemoryLimitMiB != 0 && (c.MemoryLimitMiB < 8 || c.MemoryLimitMiB > 1<<20) {
		bad("memory_limit_mib", c.MemoryLimitMiB, "is out of range (0 for no limit, else 8 or more)")
	}
	if c.MaxInflightPackets < 16 || c.MaxInflightPackets > 1<<20 {
		bad("max_inflight_packets", c.MaxInflightPackets, "is out of range (16-1048576)")
	}
	if ap, err := netip.ParseAddrPort(c.DNS.Listen); err != nil || ap.Addr().Zone() != "" {
		bad("dns.listen", c.DNS.Listen, "is not an IP:port like 127.0.0.1:53535")
	}
	if _, err := ParseUpstreams(c.DNS.Upstreams); err != nil {
		bad("dns.upstreams", c.DNS.Upstreams, "is not a comma-separated list of IP or IP:port: "+err.Error())
	}
	if c.Join.LoginServer != "" && !strings.HasPrefix(c.Join.LoginServer, "https://") {
		bad("join.login_server", c.Join.LoginServer, "is not an https:// URL")
	}
	if !validHostname(c.Join.Hostname) {
		bad("join.hostname", c.Join.Hostname, "is not a host name (letters, digits and -, up to 63)")
	}
	if e := strings.TrimSpace(c.Join.ExitNode); e != "" {
		if _, err := netip.ParseAddr(e); err != nil && !validHostname(e) {
			bad("join.exit_node", c.Join.ExitNode, "is not a peer's name or mesh IP (lanmesh exit-node list shows them)")
		}
		if c.Join.AdvertiseExitNode {
			bad("join.exit_node", c.Join.ExitNode, "is set while join.advertise_exit_node is on: a node that offers an exit node cannot use another; clear one of them")
		}
	}
	if _, err := parseMaxAge(c.NetmapCacheMaxAge); err != nil {
		bad("netmap_cache_max_age", c.NetmapCacheMaxAge, "is not a duration like 168h or 30m (0: never restore the cache)")
	}
	if c.DNS.PublishLeases && c.DNS.LeasesFile == "" {
		bad("dns.leases_file", c.DNS.LeasesFile, "must not be empty when dns.publish_leases is true")
	}
	c.Web.validate(bad)
	return errors.Join(errs...)
}

// validIfName follows the kernel's dev_valid_name.
func validIfName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

func validHostname(s string) bool {
	if len(s) > 63 || strings.HasPrefix(s, "-") || strings.HasSuffix(s, "-") {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
