package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Env describes the machine a result was measured on, so numbers from two
// machines are never compared by accident.
type Env struct {
	Date      time.Time
	Kernel    string
	CPUs      int
	CPUModel  string
	GoVersion string
}

// CurrentEnv reads the running machine's description; fields it cannot
// read say "unknown".
func CurrentEnv() Env {
	e := Env{
		Date:      time.Now().UTC(),
		Kernel:    "unknown",
		CPUs:      runtime.NumCPU(),
		CPUModel:  "unknown",
		GoVersion: runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				e.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return e
}

// WriteHeader writes the title and the environment lines of a result file.
func (e Env) WriteHeader(w io.Writer, title string) error {
	_, err := fmt.Fprintf(w, "# %s\n\n"+
		"- date: %s\n- kernel: %s\n- CPUs: %d (%s)\n- Go: %s\n\n",
		title, e.Date.Format(time.RFC3339), e.Kernel, e.CPUs, e.CPUModel, e.GoVersion)
	if err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	return nil
}
