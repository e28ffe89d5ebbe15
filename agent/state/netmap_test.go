package state

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func testCache() *NetmapCache {
	k := key.NewNode().Public()
	self := wire.Node{ID: 1, Name: "a", Key: k, Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}}
	return &NetmapCache{Version: NetmapVersion, NodeKey: k, LoginServer: "https://198.18.0.2", SavedAt: time.Unix(1700000000, 0).UTC(),
		Map: &wire.MapMessage{Seq: 3, Full: true, Self: &self, Domain: "mesh.internal",
			PacketFilter: &wire.PacketFilter{Inbound: []wire.FilterRule{{Protos: []uint8{wire.ProtoICMP}}}}}}
}

func TestNetmapRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadNetmap(dir); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing cache = %v", err)
	}
	c := testCache()
	if err := StoreNetmap(dir, c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(NetmapPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode = %v, %v", fi, err)
	}
	got, err := LoadNetmap(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeKey != c.NodeKey || got.Map.Self.Name != "a" || got.Map.PacketFilter == nil || got.Map.Seq != 3 {
		t.Fatalf("loaded %+v", got)
	}
}

func TestParseNetmapRejects(t *testing.T) {
	good, _ := json.Marshal(testCache())
	other := testCache()
	other.NodeKey = key.NewNode().Public()
	otherKey, _ := json.Marshal(other)
	delta := testCache()
	delta.Map.Full = false
	deltaB, _ := json.Marshal(delta)
	for _, c := range []struct {
		name, data, want string
	}{
		{"empty", "", "empty"},
		{"garbage", "\x00{", "not valid"},
		{"truncated", string(good[:len(good)/2]), "not valid"},
		{"trailing", string(good) + "{}", "trailing"},
		{"version", `{"version":9}`, "version"},
		{"no key", `{"version":1}`, "node_key"},
		{"other identity", string(otherKey), "self is not node_key"},
		{"delta", string(deltaB), "full netmap"},
	} {
		if _, err := ParseNetmap([]byte(c.data)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := ParseNetmap(good); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseNetmap(f *testing.F) {
	good, _ := json.Marshal(testCache())
	f.Add(good)
	f.Add([]byte(`{"version":1,"map":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseNetmap(b)
		if err == nil && (c.Map == nil || c.Map.Self == nil) {
			t.Fatal("accepted a cache without a full map")
		}
	})
}
