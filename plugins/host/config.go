package host

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tailscale/hujson"
)

// Config says which plugins run. It is read from a JSON file (comments
// and trailing commas allowed), for example:
//
//	{"plugins": [
//	  {"kind": "idp", "name": "google", "executable": "lanmesh-idp-oidc",
//	   "settings": {"issuer": "https://accounts.google.com", ...}},
//	  {"kind": "idp", "name": "local", "call_timeout": "5s"}
//	]}
type Config struct {
	Plugins []PluginConfig `json:"plugins"`
}

// PluginConfig is one plugin instance.
type PluginConfig struct {
	Kind string `json:"kind"` // "idp"
	// Name is the instance's name, unique per kind; for an idp it is the
	// provider in coord's URLs (/login/<name>).
	Name string `json:"name"`
	// Executable is a file name in the plugins directory; default
	// "lanmesh-<kind>-<name>".
	Executable string `json:"executable,omitempty"`
	// Settings are handed to the plugin as JSON on every start.
	Settings json.RawMessage `json:"settings,omitempty"`
	// CallTimeout bounds every call to the plugin; default 10s.
	CallTimeout Duration `json:"call_timeout,omitzero"`
}

// Duration is a time.Duration written as "10s" in JSON.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"10s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q: want a positive duration like \"10s\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// LoadConfig reads and checks a plugins config file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("plugins config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("plugins config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses and checks a plugins config.
func ParseConfig(b []byte) (Config, error) {
	std, err := hujson.Standardize(b)
	if err != nil {
		return Config{}, fmt.Errorf("not valid JSON: %w", err)
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(std)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w (want {\"plugins\": [{\"kind\": ..., \"name\": ...}]})", err)
	}
	seen := map[string]bool{}
	for i := range c.Plugins {
		p := &c.Plugins[i]
		where := fmt.Sprintf("plugins[%d]", i)
		if !nameRE.MatchString(p.Kind) {
			return Config{}, fmt.Errorf("%s.kind %q: want a lower-case name such as \"idp\"", where, p.Kind)
		}
		if !nameRE.MatchString(p.Name) {
			return Config{}, fmt.Errorf("%s.name %q: want 1-32 of a-z, 0-9 and '-', starting with a letter or digit", where, p.Name)
		}
		if seen[p.Kind+"/"+p.Name] {
			return Config{}, fmt.Errorf("%s: a second %s plugin named %q; names must be unique per kind", where, p.Kind, p.Name)
		}
		seen[p.Kind+"/"+p.Name] = true
		if p.Executable == "" {
			p.Executable = "lanmesh-" + p.Kind + "-" + p.Name
		}
		if strings.ContainsAny(p.Executable, `/\`) || p.Executable == "." || p.Executable == ".." {
			return Config{}, fmt.Errorf("%s.executable %q: want a file name inside the plugins directory, not a path", where, p.Executable)
		}
		if len(p.Settings) == 0 {
			p.Settings = json.RawMessage("{}")
		}
		var obj map[string]any
		if err := json.Unmarshal(p.Settings, &obj); err != nil || obj == nil {
			return Config{}, fmt.Errorf("%s.settings: want a JSON object", where)
		}
	}
	return c, nil
}
