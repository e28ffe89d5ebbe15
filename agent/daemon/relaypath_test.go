package daemon

import (
	"testing"

	"github.com/lanmesh/lanmesh/internal/wire"
)

func TestRelayInCoord(t *testing.T) {
	dm := &wire.DERPMap{Regions: []wire.DERPRegion{{ID: 1, Code: "coord", Embedded: true}, {ID: 2, Code: "fra"}}}
	for _, c := range []struct {
		path string
		dm   *wire.DERPMap
		want bool
	}{
		{"relay coord", dm, true},
		{"relay fra", dm, false},
		{"relay gone", dm, false},
		{"direct 198.18.2.2:41641", dm, false},
		{"relay", dm, false},
		{"", dm, false},
		{"relay coord", nil, false},
	} {
		if got := relayInCoord(c.path, c.dm); got != c.want {
			t.Errorf("relayInCoord(%q) = %v, want %v", c.path, got, c.want)
		}
	}
}
