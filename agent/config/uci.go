package config

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/lanmesh/lanmesh/agent/config/uci"
)

// UCI maps /etc/config/lanmesh onto the schema: options of the "agent"
// section are top-level keys, options of any other section TYPE are
// TYPE.option ("config dns" + "option listen" is dns.listen). A list
// becomes a comma-separated value. Section names do not matter, so LuCI's
// named sections ('main', 'dns') and anonymous ones both work.
//
//	config agent 'main'
//		option enabled '1'        # read by the init script only
//		option log_level 'warn'
//	config join 'join'
//		option login_server 'https://coord.example.net'
//		list advertise_routes 'lan'
//
// initOnlyKeys are UCI options for the init script (procd), not the agent.
var initOnlyKeys = map[string]bool{"enabled": true}

func uciLayer(path string, b []byte, keys map[string]kind) (map[string]any, map[string]string, error) {
	f, err := uci.Parse(path, b)
	if err != nil {
		return nil, nil, fmt.Errorf("config %v", err)
	}
	layer := map[string]any{}
	origin := map[string]string{}
	for _, s := range f.Sections {
		prefix := s.Type + "."
		if s.Type == "agent" {
			prefix = ""
		}
		names := make([]string, 0, len(s.Lines))
		for name := range s.Lines {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			at := fmt.Sprintf("%s:%d", path, s.Lines[name])
			if prefix == "" && initOnlyKeys[name] {
				continue
			}
			key := prefix + name
			kd, ok := keys[key]
			if !ok {
				return nil, nil, fmt.Errorf("%s: unknown option %q in section %q (key %s); known keys: %s", at, name, s.Type, key, knownKeys(keys))
			}
			val, isList := s.Options[name], false
			if l, ok := s.Lists[name]; ok {
				val, isList = strings.Join(l, ","), true
			}
			if isList && kd != kString {
				return nil, nil, fmt.Errorf("%s: %s is a single value; use option, not list", at, key)
			}
			from := "from " + at
			v, err := convert(key, uciBool(val, kd), kd, from)
			if err != nil {
				return nil, nil, err
			}
			layer[key] = v
			origin[key] = from
		}
	}
	return layer, origin, nil
}

// uciBool accepts the spellings uci and LuCI use for booleans.
func uciBool(v string, kd kind) string {
	if kd != kBool {
		return v
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "yes", "on", "true", "enabled":
		return "true"
	case "0", "no", "off", "false", "disabled":
		return "false"
	}
	return v
}

// AdvertiseRoutes resolves join.advertise_routes: each entry is a prefix
// or an interface of the UCI network file (network_config), e.g. "lan".
func (c *Config) AdvertiseRoutes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var netFile *uci.File
	for _, item := range strings.Split(c.Join.AdvertiseRoutes, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = appendPrefix(out, p.Masked())
			continue
		}
		if strings.ContainsAny(item, "./:") {
			return nil, fmt.Errorf("join.advertise_routes: %q is not a prefix like 198.18.7.0/24 or an interface name like lan", item)
		}
		if netFile == nil {
			b, err := readFile(c.NetworkConfig)
			if err != nil {
				return nil, fmt.Errorf("join.advertise_routes names interface %q, but the network config cannot be read (network_config): %w", item, err)
			}
			if netFile, err = uci.Parse(c.NetworkConfig, b); err != nil {
				return nil, fmt.Errorf("network_config: %w", err)
			}
		}
		ps, err := uci.InterfacePrefixes(netFile, item)
		if err != nil {
			return nil, fmt.Errorf("join.advertise_routes: %w", err)
		}
		for _, p := range ps {
			out = appendPrefix(out, p)
		}
	}
	return out, nil
}

func appendPrefix(ps []netip.Prefix, p netip.Prefix) []netip.Prefix {
	for _, q := range ps {
		if q == p {
			return ps
		}
	}
	return append(ps, p)
}

// DefaultUCI is OpenWrt's config file for the agent; used when present
// and no --uci flag says otherwise.
const DefaultUCI = "/etc/config/lanmesh"

// UCIPath returns flagValue, or DefaultUCI when it exists and no flag
// was given ("none" turns UCI off).
func UCIPath(flagValue string) string {
	switch flagValue {
	case "none":
		return ""
	case "":
		if _, err := os.Stat(DefaultUCI); err == nil {
			return DefaultUCI
		}
		return ""
	}
	return flagValue
}

// RestartKeys names the keys that differ between a and b and only take
// effect when the agent restarts (everything but the join block).
func RestartKeys(a, b *Config) []string {
	var out []string
	am, bm := toMap(*a), toMap(*b)
	for k, v := range am {
		if !strings.HasPrefix(k, "join.") && bm[k] != v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
