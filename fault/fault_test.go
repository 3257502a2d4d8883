package fault

import "testing"

func TestKnownCodesHaveAStatus(t *testing.T) {
	for code := range known {
		if code != Internal && HTTPStatus(code) == 500 {
			t.Errorf("code %s maps to 500: give it a status in HTTPStatus", code)
		}
	}
	for _, c := range []string{"", "wrapError", "node_failover", "*errors.errorString"} {
		if Known(c) {
			t.Errorf("Known(%q) = true", c)
		}
	}
}
