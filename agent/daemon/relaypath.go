package daemon

import (
	"strings"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// relayInCoord reports whether path ("relay <region code>") goes through
// a relay region that coord marks as its embedded one: that relay stops
// while coord is down, so the peer's traffic does too (a direct path does
// not need coord). docs/nat-traversal.md, "When coord is down".
func relayInCoord(path string, dm *wire.DERPMap) bool {
	code, ok := strings.CutPrefix(path, "relay ")
	if !ok || dm == nil {
		return false
	}
	for _, r := range dm.Regions {
		if r.Code == code {
			return r.Embedded
		}
	}
	return false
}
