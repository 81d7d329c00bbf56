//go:build ignore

// testsum reads `go test -json` on stdin and prints what plain `go test`
// would (each package's result line, and the output of failing tests), then
// one closing line counting the tests: "N passed, N failed, N skipped".
// Subtests are counted with their parents, not on their own.
//
//	go test -json ./... | go run scripts/testsum.go
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	held := map[string][]string{} // package/test -> output, shown if it fails
	var passed, failed, skipped int
	var failures []string
	for in.Scan() {
		var ev event
		if err := json.Unmarshal(in.Bytes(), &ev); err != nil {
			// Not JSON: a build error or a line printed outside a test.
			fmt.Println(in.Text())
			continue
		}
		key := ev.Package + "/" + ev.Test
		switch {
		case ev.Test == "" && ev.Action == "output":
			fmt.Print(ev.Output)
		case ev.Action == "output":
			if len(held[key]) < 2000 {
				held[key] = append(held[key], ev.Output)
			}
		case ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip":
			if ev.Test == "" {
				continue
			}
			top := !strings.Contains(ev.Test, "/")
			switch {
			case ev.Action == "fail" && top:
				fmt.Print(strings.Join(held[key], ""))
			case ev.Action == "fail":
				// A failed subtest's output is shown with its parent's.
				parent := ev.Package + "/" + ev.Test[:strings.Index(ev.Test, "/")]
				held[parent] = append(held[parent], held[key]...)
			}
			delete(held, key)
			if !top {
				continue
			}
			switch ev.Action {
			case "pass":
				passed++
			case "fail":
				failed++
				failures = append(failures, ev.Package+"."+ev.Test)
			case "skip":
				skipped++
			}
		}
	}
	// Tests that never finished (a panic, a timeout): their output is the
	// only account of what happened.
	for key, out := range held {
		if !strings.Contains(strings.TrimPrefix(key, "/"), "/") || len(out) == 0 {
			continue
		}
		fmt.Printf("--- unfinished: %s\n%s", key, strings.Join(out, ""))
	}
	for _, f := range failures {
		fmt.Println("FAILED:", f)
	}
	if path := os.Getenv("TESTSUM_FILE"); path != "" {
		// For a caller that sums several runs into one closing line.
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			fmt.Fprintf(f, "%d %d %d\n", passed, failed, skipped)
			f.Close()
		}
		return
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
}
