package protocol

import "testing"

func TestLimitOf(t *testing.T) {
	l := Limit{Default: 100, Max: 1000}
	for _, c := range []struct {
		n, want int
		ok      bool
	}{
		{0, 100, true}, {1, 1, true}, {1000, 1000, true},
		{-1, 0, false}, {1001, 0, false},
	} {
		if got, ok := l.Of(c.n); got != c.want || ok != c.ok {
			t.Errorf("Of(%d) = %d, %v; want %d, %v", c.n, got, ok, c.want, c.ok)
		}
	}
}

func TestStatusAndCodeAgree(t *testing.T) {
	for code, status := range codeStatuses {
		if got := HTTPStatus(code); got != status {
			t.Errorf("HTTPStatus(%s) = %d, want %d", code, got, status)
		}
		if got := CodeOfStatus(status); got != code {
			t.Errorf("CodeOfStatus(%d) = %s, want %s", status, got, code)
		}
	}
	if HTTPStatus(CodeInternal) != 500 || HTTPStatus("no_such_code") != 500 {
		t.Error("an internal or unknown code is not 500")
	}
	for _, s := range []int{502, 503, 504} {
		if CodeOfStatus(s) != CodeUnavailable {
			t.Errorf("CodeOfStatus(%d) = %s, want unavailable", s, CodeOfStatus(s))
		}
	}
	if CodeOfStatus(418) != CodeInternal || CodeOfStatus(500) != CodeInternal {
		t.Error("a status no code has is not internal")
	}
}
