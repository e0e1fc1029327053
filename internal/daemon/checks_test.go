package daemon

import (
	"testing"

	"github.com/palisade-lb/palisade/internal/config"
)

func TestCheckKeySameForEqualAgentSpecs(t *testing.T) {
	plan := func(port int) serverPlan {
		return serverPlan{
			cfg:     &config.Server{Address: "127.0.0.1:80"},
			backend: &config.Backend{Health: config.Health{Type: "tcp", Agent: &config.AgentSpec{Port: port}}},
		}
	}
	if a, b := checkKey(plan(9000)), checkKey(plan(9000)); a != b {
		t.Errorf("equal settings, different keys (a reload would restart the checks):\n%s\n%s", a, b)
	}
	if a, b := checkKey(plan(9000)), checkKey(plan(9001)); a == b {
		t.Errorf("agent port changed, key did not: %s", a)
	}
}
