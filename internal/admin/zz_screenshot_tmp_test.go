package admin

import (
	"time"

	"github.com/palisade-lb/palisade/internal/api"
	"os"
	"os/exec"
	"testing"
)

func TestZZScreenshot(t *testing.T) {
	out := os.Getenv("SHOT")
	if out == "" {
		t.Skip()
	}
	h := startTCP(t, false)
	if os.Getenv("FAILED") != "" {
		h.fd.status.LastReload = api.Reload{OK: false, At: started.Add(3 * time.Hour), Errors: []string{
			`/etc/palisade/palisade.yaml:5:22: backend "nope" is not defined`, "/etc/palisade/palisade.yaml:6:16: max_conns: -5 is out of range"}}
		h.fd.vrrp = nil
		h.fd.status.Synflood = api.Synflood{Enabled: true, Interface: "eth0", Error: "attaching XDP program: operation not permitted"}
	}
	url := h.base + "/#token=" + testToken
	if os.Getenv("NOTOKEN") != "" {
		url = h.base + "/"
	}
	dir := t.TempDir()
	cmd := exec.Command("chromium", "--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+dir, "--screenshot="+out, "--window-size="+os.Getenv("SIZE"),
		"--virtual-time-budget=5000", url)
	b, err := cmd.CombinedOutput()
	t.Log(string(b))
	if err != nil {
		t.Fatal(err)
	}
}
