package loadtest

import "testing"

func TestReportExit(t *testing.T) {
	t.Parallel()
	bad := &Check{Acked: 3, Stored: 2, Missing: 1}
	good := &Check{Acked: 3, Stored: 3}
	for _, tc := range []struct {
		name  string
		r     Report
		allow bool
		want  int
	}{
		{"OK", Report{Check: good}, false, ExitOK},
		{"OKNoCheck", Report{}, false, ExitOK},
		{"OKUnackedAllowed", Report{Check: good, Unacked: 5}, true, ExitOK},
		{"ErrUnacked", Report{Check: good, Unacked: 5}, false, ExitNotAcked},
		{"ErrCheck", Report{Check: bad}, true, ExitFailed},
		{"ErrCheckBeforeUnacked", Report{Check: bad, Unacked: 5}, false, ExitFailed},
		{"ErrInterrupted", Report{Check: good, Interrupted: true}, false, ExitFailed},
		{"ErrUnackedBeforeInterrupted", Report{Unacked: 1, Interrupted: true}, false, ExitNotAcked},
	} {
		if got := tc.r.Exit(tc.allow); got != tc.want {
			t.Errorf("%s: Exit(%v) = %d, want %d", tc.name, tc.allow, got, tc.want)
		}
	}
}
