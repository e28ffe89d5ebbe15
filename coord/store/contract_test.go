package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/coord/store/storetest"
)

// The SQLite store passes the store contract (S7, S19, unique addresses
// and names).
func TestSQLiteContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "coord.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
