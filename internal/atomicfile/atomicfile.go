// Package atomicfile writes files so that a crash or power cut leaves
// either the old or the new content, never a partial file. Routers run on
// flash: callers write rarely, and only when the content changed.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes b to path with mode: a temp file in the same directory,
// synced, renamed over path, then the directory synced.
func Write(path string, b []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
