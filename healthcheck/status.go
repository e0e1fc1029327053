package healthcheck

import (
	"fmt"
	"strconv"
	"strings"
)

// statusSet is a parsed expect_status: inclusive ranges of HTTP status codes.
type statusSet []statusRange

type statusRange struct{ lo, hi int }

// parseStatusSet parses "200", "200-399" or comma-separated lists of both.
func parseStatusSet(s string) (statusSet, error) {
	var set statusSet
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("%q: empty status code in list", s)
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseStatusCode(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parseStatusCode(strings.TrimSpace(hi)); err != nil {
				return nil, fmt.Errorf("%q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("%q: range %d-%d is reversed", s, a, b)
			}
		}
		set = append(set, statusRange{a, b})
	}
	return set, nil
}

func parseStatusCode(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || len(s) != 3 || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not an HTTP status code (100-599)", s)
	}
	return n, nil
}

func (set statusSet) contains(code int) bool {
	for _, r := range set {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}
