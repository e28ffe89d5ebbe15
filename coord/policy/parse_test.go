package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/wire"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown alias", "{\n\t\"acls\": [\n\t\t{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"nass:22\"]},\n\t],\n}",
			`p.hujson:3:46: acls[0].dst[0]: unknown host alias "nass"`},
		{"unknown alias after comment", "// comment\n{\"hosts\": {\"nas\": \"198.19.1.10\"}, /* x */ \"acls\": [{\"action\": \"accept\", \"src\": [\"nas\"], \"dst\": [\"nass:22\"]}]}",
			`p.hujson:2:97: acls[0].dst[0]: unknown host alias "nass"`},
		{"unknown field", "{\n  \"acls\": [],\n  \"aclz\": []\n}", `p.hujson:3:3: unknown field "aclz"`},
		{"known unsupported", "{\n  \"acls\": [],\n  \"tests\": [{\"src\": \"a@b\", \"accept\": [\"1.2.3.4:1\"], \"srcPostureAttrs\": {}}]\n}", `p.hujson:3:53: tests[0].srcPostureAttrs: not supported yet`},
		{"unknown acl field", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "portz": []}]}`, `p.hujson:1:62: acls[0]: unknown field "portz"`},
		{"legacy and new", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "ports": []}]}`, `p.hujson:1:71: acls[0].ports: both "dst" and its legacy name "ports"`},
		{"duplicate key", "{\"hosts\": {\"a\": \"1.2.3.4\",\n \"a\": \"1.2.3.5\"}}", `p.hujson:2:2: hosts: duplicate key "a"`},
		{"duplicate key case", `{"acls": [], "ACLs": []}`, `p.hujson:1:14: duplicate key "ACLs"`},
		{"syntax", "{\n  \"acls\": [}", "p.hujson:2:12: invalid character '}'"},
		{"not object", `[]`, "p.hujson:1:1: policy must be a JSON object"},
		{"wrong type", "{\"acls\": {}}", "p.hujson:1:10: acls: expected a list, found an object"},
		{"group cycle", `{"groups": {"group:a": ["group:b"], "group:b": ["group:c"], "group:c": ["group:a"]}}`,
			`group cycle: group:a -> group:b -> group:c -> group:a`},
		{"group unknown member", `{"groups": {"group:a": ["group:nope"]}}`, `p.hujson:1:25: groups["group:a"][0]: unknown group "group:nope"`},
		{"group bad member", `{"groups": {"group:a": ["bob"]}}`, `is neither a user`},
		{"group bad name", `{"groups": {"admins": ["a@b"]}}`, `group name "admins" must be`},
		{"tag not owned", `{"acls": [{"action": "accept", "src": ["tag:x"], "dst": ["*:*"]}]}`, `p.hujson:1:40: acls[0].src[0]: unknown tag "tag:x"`},
		{"bad action", `{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}`, `acls[0].action: action "deny"`},
		{"no src", `{"acls": [{"action": "accept", "dst": ["*:*"]}]}`, `p.hujson:1:11: acls[0]: missing "src"`},
		{"bad port", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:70000"]}]}`, `port "70000" must be a number`},
		{"backwards range", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:20-10"]}]}`, `port range "20-10" is backwards`},
		{"port zero", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:0"]}]}`, `port "0"`},
		{"no ports", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["1.2.3.4"]}]}`, `must be host:ports`},
		{"icmp with port", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"], "proto": "icmp"}]}`, `proto "icmp" has no ports`},
		{"bad proto", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "tcpp"}]}`, `p.hujson:1:71: acls[0].proto: unknown proto "tcpp"`},
		{"bad host ip", `{"hosts": {"lan": "198.19.1.500"}}`, `is not an IP address`},
		{"self in src", `{"acls": [{"action": "accept", "src": ["autogroup:self"], "dst": ["*:*"]}]}`, `only allowed in dst`},
		{"self with tag src", `{"tagOwners": {"tag:a": []}, "acls": [{"action": "accept", "src": ["tag:a"], "dst": ["autogroup:self:*"]}]}`, `src may only name users`},
		{"unknown autogroup", `{"acls": [{"action": "accept", "src": ["autogroup:admins"], "dst": ["*:*"]}]}`, `unknown autogroup`},
		{"bad user", `{"acls": [{"action": "accept", "src": ["a@b@c"], "dst": ["*:*"]}]}`, `not a valid user`},
		{"approver prefix", `{"autoApprovers": {"routes": {"10.0.0.1/8": ["a@b"]}}}`, `autoApprovers.routes["10.0.0.1/8"]: "10.0.0.1/8" has host bits set`},
		{"approver star", `{"autoApprovers": {"exitNode": ["*"]}}`, `autoApprovers.exitNode[0]: "*" is not allowed here`},
		{"ssh action", `{"ssh": [{"action": "allow", "src": ["a@b"], "dst": ["autogroup:self"], "users": ["root"]}]}`, `ssh[0].action`},
		{"ssh user", `{"ssh": [{"action": "accept", "src": ["a@b"], "dst": ["autogroup:self"], "users": [""]}]}`, `ssh[0].users[0]: ssh user "" is not valid`},
		{"ssh dst", `{"ssh": [{"action": "accept", "src": ["a@b"], "dst": ["*"], "users": ["root"]}]}`, `ssh dst "*" must be`},
		{"ssh checkPeriod", `{"ssh": [{"action": "accept", "src": ["a@b"], "dst": ["autogroup:self"], "users": ["root"], "checkPeriod": "1h"}]}`, `checkPeriod needs action "check"`},
		{"test src network", `{"tests": [{"src": "10.0.0.0/8", "accept": ["1.2.3.4:22"]}]}`, `tests[0].src: test src "10.0.0.0/8" is a network`},
		{"test dst network", `{"hosts": {"lan": "10.0.0.0/8"}, "tests": [{"src": "a@b", "accept": ["lan:22"]}]}`, `tests[0].accept[0]: test destination "lan" is a network`},
		{"test no src", "{\"tests\": [\n  {\"accept\": [\"1.2.3.4:22\"]}]}", `p.hujson:2:3: tests[0]: missing "src"`},
		{"ssh tag to self", `{"tagOwners": {"tag:ci": []}, "ssh": [{"action": "accept", "src": ["tag:ci"], "dst": ["autogroup:self"], "users": ["root"]}]}`, `ssh[0].src[0]: ssh src "tag:ci" with dst "autogroup:self" refused`},
		{"ssh tag to user", `{"tagOwners": {"tag:ci": []}, "ssh": [{"action": "accept", "src": ["tag:ci"], "dst": ["a@b"], "users": ["root"]}]}`, `ssh src "tag:ci" with dst "a@b" refused`},
		{"ssh group to user", `{"groups": {"group:g": ["a@b"]}, "ssh": [{"action": "accept", "src": ["group:g"], "dst": ["a@b"], "users": ["root"]}]}`, `ssh src "group:g" with dst "a@b" refused`},
		{"ssh other user", `{"ssh": [{"action": "accept", "src": ["c@d"], "dst": ["a@b"], "users": ["root"]}]}`, `ssh src "c@d" with dst "a@b" refused`},
		{"ssh no action", `{"ssh": [{"src": ["a@b"], "dst": ["autogroup:self"], "users": ["root"]}]}`, `p.hujson:1:10: ssh[0]: missing "action"`},
		{"ssh no users", `{"ssh": [{"action": "accept", "src": ["a@b"], "dst": ["autogroup:self"]}]}`, `ssh[0]: missing "users"`},
		{"ssh star user", `{"ssh": [{"action": "accept", "src": ["a@b"], "dst": ["autogroup:self"], "users": ["*"]}]}`, `ssh user "*"`},
		{"ssh period max", `{"ssh": [{"action": "check", "src": ["a@b"], "dst": ["autogroup:self"], "users": ["root"], "checkPeriod": "168h0m1s"}]}`, `above the maximum of 168h`},
		{"ssh empty env", `{"ssh": [{"action": "accept", "src": ["a@b"], "dst": ["autogroup:self"], "users": ["root"], "acceptEnv": [""]}]}`, `acceptEnv entries cannot be empty`},
		{"ssh host dst", `{"hosts": {"srv": "100.64.0.1"}, "ssh": [{"action": "accept", "src": ["a@b"], "dst": ["srv"], "users": ["root"]}]}`, `ssh dst "srv" must be`},
		{"danger-all dst", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["autogroup:danger-all:*"]}]}`, `only allowed in src`},
		{"every error", "{\"acls\": [\n{\"action\": \"accept\", \"src\": [\"x@y\"], \"dst\": [\"a:1\"]},\n{\"action\": \"accept\", \"src\": [\"x@y\"], \"dst\": [\"b:1\"]}]}", "p.hujson:2:46: acls[0].dst[0]: unknown host alias \"a\"\np.hujson:3:46: acls[1].dst[0]: unknown host alias \"b\""},
		{"test port", `{"tests": [{"src": "a@b", "accept": ["1.2.3.4:*"]}]}`, `tests[0].accept[0]`},
		{"test empty", `{"tests": [{"src": "a@b"}]}`, `neither "accept" nor "deny"`},
		{"too big", "{" + strings.Repeat(" ", MaxPolicyBytes) + "}", `more than the limit`},
		{"too deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), `p.hujson:1:33: nested deeper than 32`},
		{"too many rules", `{"acls": [` + strings.Repeat(`{"action": "accept", "src": ["*"], "dst": ["*:*"]},`, MaxACLs+1) + `]}`, `entries, more than the limit`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.hujson", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error containing %q", p, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, tt.want)
			}
		})
	}
}

func TestParseGood(t *testing.T) {
	in := `// comments and trailing commas are fine
{
	"Groups": {"group:a": ["alice@example.com", "group:b",], "group:b": ["bob@example.com"]},
	"tagOwners": {"tag:web": ["group:a"], "tag:db": ["tag:web"]},
	"hosts": {"nas": "198.19.1.10", "lan": "198.19.1.0/24", "v6": "2001:db8::/64"},
	"acls": [
		{"action": "accept", "src": ["group:a", "tag:web", "lan", "198.19.9.0/24"], "dst": ["nas:445", "tag:db:5432,6000-6010", "[2001:db8::1]:22", "v6:80"]},
		{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*", "autogroup:internet:*"], "proto": "udp"},
		{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "icmp"},
		{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "47"},
	],
	"ssh": [{"action": "check", "src": ["group:a"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot", "root"], "checkPeriod": "12h"}],
	"autoApprovers": {"routes": {"198.19.0.0/16": ["tag:web", "group:a"]}, "exitNode": ["bob@example.com"]},
	"tests": [{"src": "alice@example.com", "accept": ["nas:445"], "deny": ["nas:22"], "proto": "tcp"}],
}`
	p, err := Parse("good.hujson", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.groupUsers["group:a"]; !got["alice@example.com"] || !got["bob@example.com"] || len(got) != 2 {
		t.Errorf("group:a flattened to %v", got)
	}
	if len(p.ACLs) != 4 || len(p.ACLs[0].dst) != 4 {
		t.Fatalf("acls: %+v", p.ACLs)
	}
	if got, want := p.ACLs[0].dst[1].ports, []wire.PortRange{pr(5432, 5432), pr(6000, 6010)}; !equalPorts(got, want) {
		t.Errorf("ports %v, want %v", got, want)
	}
	if got := p.ACLs[0].dst[2].sel.prefix; got != netip.MustParsePrefix("2001:db8::1/128") {
		t.Errorf("bracketed v6 dst = %v", got)
	}
	if p.Hosts["lan"] != netip.MustParsePrefix("198.19.1.0/24") {
		t.Errorf("hosts: %v", p.Hosts)
	}
	if p.SSH[0].CheckPeriod.Hours() != 12 {
		t.Errorf("checkPeriod %v", p.SSH[0].CheckPeriod)
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in   string
		want []wire.PortRange
	}{
		{"*", []wire.PortRange{wire.AllPorts}},
		{"22", []wire.PortRange{pr(22, 22)}},
		{"443,80", []wire.PortRange{pr(80, 80), pr(443, 443)}},
		{"1000-2000,1500-2500,2501", []wire.PortRange{pr(1000, 2501)}},
		{"65535", []wire.PortRange{pr(65535, 65535)}},
	}
	for _, tt := range tests {
		got, err := parsePorts(tt.in)
		if err != nil || !equalPorts(got, tt.want) {
			t.Errorf("parsePorts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "a", "-1", "1-", "0", "65536", "5-4", "1,,2", "*,22"} {
		if got, err := parsePorts(bad); err == nil {
			t.Errorf("parsePorts(%q) = %v, want error", bad, got)
		}
	}
}

func equalPorts(a, b []wire.PortRange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func pr(first, last uint16) wire.PortRange { return wire.PortRange{First: first, Last: last} }

// TestParseTailscaleForms: forms Tailscale accepts that lanmesh reads
// the same way.
func TestParseTailscaleForms(t *testing.T) {
	in := `{
	"groups": {" group:a ": [" alice@example.com "]},
	"tagOwners": {"tag:web": ["autogroup:admin"]},
	"hosts": {"lan": "198.19.1.7/24"},
	"randomizeClientPort": true, "disableIPv4": false, "OneCGNATRoute": "", "derpMap": {"OmitDefaultRegions": true},
	"acls": [
		{"action": "accept", "users": ["group:a", "user:*@example.com", "autogroup:members", "autogroup:danger-all"], "ports": ["lan:22"]},
		{"action": "accept", "src": ["*"], "dst": ["autogroup:self:*"]},
		{"action": "accept", "src": ["autogroup:admin", "autogroup:owner", "autogroup:shared"], "dst": ["tag:web:443"]},
	],
	"ssh": [
		{"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["localpart:*@example.com", "autogroup:nonroot", "пользователь"], "checkPeriod": "always", "acceptEnv": ["GIT_*"]},
		{"action": "accept", "src": [], "dst": [], "users": ["root"]},
		{"action": "accept", "src": ["alice@example.com"], "dst": ["alice@example.com"], "users": ["="]},
	],
	"autoApprovers": {"services": {"svc:web": ["tag:web"]}},
}`
	p, err := Parse("ts.hujson", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	for _, w := range p.Warnings {
		warned = append(warned, w.Error())
	}
	all := strings.Join(warned, "\n")
	for _, want := range []string{"randomizeClientPort: accepted without effect", "derpMap: accepted without effect",
		"disableIPv4: accepted without effect", "OneCGNATRoute: accepted without effect", "autoApprovers.services: accepted without effect",
		`hosts.lan: "198.19.1.7/24" has host bits set; read as 198.19.1.0/24`} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	if p.Hosts["lan"] != netip.MustParsePrefix("198.19.1.0/24") || !p.groupUsers["group:a"]["alice@example.com"] {
		t.Errorf("hosts %v groups %v", p.Hosts, p.groupUsers)
	}
	if p.SSH[0].CheckPeriod != CheckAlways {
		t.Errorf("checkPeriod always = %v", p.SSH[0].CheckPeriod)
	}
}
