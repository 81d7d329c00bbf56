package web_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/ikabud/panel/web/static"
)

// TestVendoredAssets: every vendored file is the one VENDOR.md names, by
// hash, and every file the layout links is served from the binary.
func TestVendoredAssets(t *testing.T) {
	table, err := os.ReadFile("../../web/static/VENDOR.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\| [^|]+ \| [^|]+ \| ([^|]+) \| [^|]+ \| [^|]+ \| ([0-9a-f, ]+) \|$`)
	n := 0
	for _, m := range row.FindAllStringSubmatch(string(table), -1) {
		files := strings.Split(strings.TrimSpace(m[1]), ", ")
		sums := strings.Split(strings.TrimSpace(m[2]), ", ")
		if len(files) != len(sums) {
			t.Fatalf("VENDOR.md row %q: %d files, %d hashes", m[0], len(files), len(sums))
		}
		for i, f := range files {
			data, err := static.Files.ReadFile(f)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != sums[i] {
				t.Errorf("%s: sha256 %x, VENDOR.md says %s", f, sum, sums[i])
			}
			n++
		}
	}
	if n < 4 {
		t.Fatalf("VENDOR.md lists %d files; its table did not parse", n)
	}
	e := newPanelEnv(t)
	b := e.browser()
	page := string(b.get("/login").body)
	links := regexp.MustCompile(`(?:href|src)="(/static/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(links) < 5 {
		t.Fatalf("the layout links %d static files", len(links))
	}
	for _, l := range links {
		res, err := http.Get(e.base + l[1])
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || len(body) == 0 {
			t.Errorf("%s: %d", l[1], res.StatusCode)
		}
	}
	// Nothing outside the embedded set (the embed's Go file, directories).
	for _, p := range []string{"/static/embed.go", "/static/vendor/", "/static/../go.mod"} {
		res, err := http.Get(e.base + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Errorf("%s is served", p)
		}
	}
}
