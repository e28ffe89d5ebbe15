package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/lanmesh/lanmesh/coord/policy"
)

// PolicyCompatResult is what `lanmesh-bench -only policycompat` measured
// over a directory of policy files: each file is run through what
// `lanmesh-coord policy check` does (parse, validate, run its tests).
//
// A file NAME.hujson (or NAME.json) may have a sidecar
// NAME.expect.json, {"code": 200|400, "message": "...", "source": "..."},
// holding another implementation's recorded verdict (200 accepted, 4xx
// refused); the result then counts agreements.
type PolicyCompatResult struct {
	Dir      string
	Files    int
	Accepted int
	Refused  map[string]int // reason class -> files
	Crashed  []string       // files that panicked, with the panic
	// With a recorded verdict:
	Expected         int
	ExpectAccepted   int      // documents the recording accepted
	BothAccepted     int      // ... and lanmesh accepts too
	ExpectRefused    int      // documents the recording refused
	BothRefused      int      // ... and lanmesh refuses too
	WronglyAccepted  []string // recorded refused, lanmesh accepted (file: recorded message)
	WronglyRefused   []string // recorded accepted, lanmesh refused (file: lanmesh's first error)
	Warned           int      // accepted with at least one warning
	StrictRefused    int      // recorded refused, and refused by policy check --strict
	RefusedByExample map[string]string
}

type expectation struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Source  string `json:"source"`
}

// RunPolicyCompat checks every policy file under dir.
func RunPolicyCompat(dir string) (*PolicyCompatResult, error) {
	res := &PolicyCompatResult{Dir: dir, Refused: map[string]int{}, RefusedByExample: map[string]string{}}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || strings.HasSuffix(name, ".expect.json") {
			return nil
		}
		if strings.HasSuffix(name, ".hujson") || strings.HasSuffix(name, ".json") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy dir: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("policy dir %s: no .hujson or .json files", dir)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(dir, f)
		res.Files++
		errs, warns, notPortable, crash := checkPolicyFile(rel, b)
		if crash != "" {
			res.Crashed = append(res.Crashed, rel+": "+crash)
			continue
		}
		accepted := len(errs) == 0
		if accepted {
			res.Accepted++
			if warns > 0 {
				res.Warned++
			}
		} else {
			class := reasonClass(errs[0])
			res.Refused[class]++
			if _, ok := res.RefusedByExample[class]; !ok {
				res.RefusedByExample[class] = rel
			}
		}
		exp, ok := readExpectation(f)
		if !ok {
			continue
		}
		res.Expected++
		switch {
		case exp.Code == 200:
			res.ExpectAccepted++
			if accepted {
				res.BothAccepted++
			} else {
				res.WronglyRefused = append(res.WronglyRefused, rel+": "+errs[0])
			}
		case exp.Code >= 400 && exp.Code < 500:
			res.ExpectRefused++
			if accepted {
				res.WronglyAccepted = append(res.WronglyAccepted, rel+": recorded "+exp.Message)
			} else {
				res.BothRefused++
			}
			if !accepted || notPortable > 0 {
				res.StrictRefused++
			}
		default:
			res.Expected-- // a server error records no verdict
		}
	}
	return res, nil
}

// checkPolicyFile does what `policy check` does; a panic is reported,
// never propagated.
func checkPolicyFile(name string, b []byte) (errs []string, warns, notPortable int, crash string) {
	defer func() {
		if r := recover(); r != nil {
			crash = fmt.Sprint(r)
		}
	}()
	d := policy.Diagnose(name, b)
	for _, e := range d.Errors {
		errs = append(errs, e.Msg)
	}
	if d.Policy != nil {
		if err := policy.Check(d.Policy, nil); err != nil {
			var pe *policy.Error
			msg := err.Error()
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				err = j.Unwrap()[0]
			}
			if ok := asPolicyError(err, &pe); ok {
				msg = pe.Msg
			}
			errs = append(errs, msg)
		}
	}
	return errs, len(d.Warnings), len(d.NotPortable), ""
}

func asPolicyError(err error, out **policy.Error) bool {
	e, ok := err.(*policy.Error)
	if ok {
		*out = e
	}
	return ok
}

func readExpectation(f string) (expectation, bool) {
	base := strings.TrimSuffix(strings.TrimSuffix(f, ".hujson"), ".json")
	b, err := os.ReadFile(base + ".expect.json")
	if err != nil {
		return expectation{}, false
	}
	var e expectation
	if err := json.Unmarshal(b, &e); err != nil || e.Code == 0 {
		return expectation{}, false
	}
	return e, true
}

var quotedRE = regexp.MustCompile(`"[^"]*"|\d+(\.\d+)*(/\d+)?`)

// reasonClass groups refusals: names and numbers are blanked, so
// `unknown tag "tag:a"` and `unknown tag "tag:b"` are one reason.
func reasonClass(msg string) string {
	msg = strings.SplitN(msg, "\n", 2)[0]
	if strings.HasPrefix(msg, "test failed:") {
		return "a policy test failed"
	}
	msg = quotedRE.ReplaceAllStringFunc(msg, func(s string) string {
		if strings.HasPrefix(s, `"`) {
			return `"…"`
		}
		return "N"
	})
	if len(msg) > 120 {
		msg = msg[:120] + "…"
	}
	return msg
}

const (
	corpusBegin = "<!-- policycompat:begin -->"
	corpusEnd   = "<!-- policycompat:end -->"
)

// WritePolicyCompatReport renders res as markdown.
func WritePolicyCompatReport(w io.Writer, res *PolicyCompatResult, env Env, command string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Measured %s by `%s` (%s, %d CPUs, %s).\n\n", env.Date.Format("2006-01-02"), command, env.CPUModel, env.CPUs, env.GoVersion)
	pct := func(a, n int) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(n))
	}
	t := Table{Header: []string{"documents", "accepted", "refused", "crashed", "accepted with warnings"}}
	refused := 0
	for _, n := range res.Refused {
		refused += n
	}
	t.Add(fmt.Sprint(res.Files), fmt.Sprintf("%d (%s)", res.Accepted, pct(res.Accepted, res.Files)),
		fmt.Sprintf("%d (%s)", refused, pct(refused, res.Files)), fmt.Sprint(len(res.Crashed)), fmt.Sprint(res.Warned))
	if _, err := t.WriteTo(&b); err != nil {
		return err
	}
	if res.Expected > 0 {
		fmt.Fprintf(&b, "\nAgainst the %d recorded verdicts:\n\n", res.Expected)
		t := Table{Header: []string{"recorded verdict", "documents", "lanmesh agrees", "share"}}
		t.Add("accepted", fmt.Sprint(res.ExpectAccepted), fmt.Sprint(res.BothAccepted), pct(res.BothAccepted, res.ExpectAccepted))
		t.Add("refused", fmt.Sprint(res.ExpectRefused), fmt.Sprint(res.BothRefused), pct(res.BothRefused, res.ExpectRefused))
		t.Add("refused (lanmesh with --strict)", fmt.Sprint(res.ExpectRefused), fmt.Sprint(res.StrictRefused), pct(res.StrictRefused, res.ExpectRefused))
		if _, err := t.WriteTo(&b); err != nil {
			return err
		}
	}
	if len(res.Refused) > 0 {
		b.WriteString("\nRefused, by reason (the first error of each document):\n\n")
		t := Table{Header: []string{"reason", "documents", "example"}}
		reasons := make([]string, 0, len(res.Refused))
		for r := range res.Refused {
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(i, j int) bool {
			if res.Refused[reasons[i]] != res.Refused[reasons[j]] {
				return res.Refused[reasons[i]] > res.Refused[reasons[j]]
			}
			return reasons[i] < reasons[j]
		})
		for _, r := range reasons {
			t.Add("`"+r+"`", fmt.Sprint(res.Refused[r]), res.RefusedByExample[r])
		}
		if _, err := t.WriteTo(&b); err != nil {
			return err
		}
	}
	for _, l := range []struct {
		title string
		list  []string
	}{{"Recorded as refused, accepted by lanmesh", res.WronglyAccepted}, {"Recorded as accepted, refused by lanmesh", res.WronglyRefused}, {"Crashed", res.Crashed}} {
		if len(l.list) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s (%d):\n\n", l.title, len(l.list))
		for _, s := range l.list {
			fmt.Fprintf(&b, "- `%s`\n", strings.ReplaceAll(s, "`", "'"))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// UpdatePolicyCompatFile puts report between the policycompat markers of
// the file at path (bench/results/policy-compat.md), keeping the rest.
func UpdatePolicyCompatFile(path string, report []byte) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, corpusBegin), strings.Index(s, corpusEnd)
	var out string
	if i < 0 || j < i {
		out = s + "\n## Corpus\n\n" + corpusBegin + "\n" + string(report) + corpusEnd + "\n"
	} else {
		out = s[:i+len(corpusBegin)] + "\n" + string(report) + s[j:]
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
