package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// iperf3Result is the part of `iperf3 -J` output the benchmark reads.
type iperf3Result struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Seconds       float64 `json:"seconds"`
		} `json:"sum_received"`
	} `json:"end"`
}

// ParseIperf3 returns the receiver-side TCP throughput in bit/s from the
// JSON that `iperf3 -c ... -J` prints.
func ParseIperf3(b []byte) (float64, error) {
	var r iperf3Result
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3 reported: %s", r.Error)
	}
	bps, secs := r.End.SumReceived.BitsPerSecond, r.End.SumReceived.Seconds
	if !(bps > 0) || bps > 1e13 {
		return 0, fmt.Errorf("iperf3 JSON: end.sum_received.bits_per_second %v is not a plausible rate", bps)
	}
	if !(secs > 0) {
		return 0, fmt.Errorf("iperf3 JSON: end.sum_received.seconds %v: no data received", secs)
	}
	return bps, nil
}

// ParseVmHWM returns the peak resident set size in bytes from the text of
// /proc/PID/status (the "VmHWM:  1234 kB" line).
func ParseVmHWM(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmHWM line %q: want \"VmHWM: <n> kB\"", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, fmt.Errorf("VmHWM value %q: want a kB count", f[0])
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	return 0, errors.New("no VmHWM line in status (kernel thread or exited process?)")
}
