package loadtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeProc writes a fake /proc: the machine's line and each process's
// stat line (pid: ppid and utime, stime, cutime, cstime).
func writeProc(t *testing.T, dir, machine string, procs map[int][5]int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(machine+"\ncpu0 1 2 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for pid, p := range procs {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprint(pid)), 0o755); err != nil {
			t.Fatal(err)
		}
		// A name with a space and a parenthesis, as /proc may show.
		line := fmt.Sprintf("%d (post gres) x) S %d 1 1 0 -1 4194560 100 0 0 0 %d %d %d %d 20 0 1 0 100 1000 10\n",
			pid, p[0], p[1], p[2], p[3], p[4])
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(pid), "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCPUMeter_Sample(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		// 10: a postmaster; 11 and 12 its backends, 13 a child of 12; 20 elsewhere.
		writeProc(t, dir, "cpu  100 0 50 800 50 0 0 0 0 0", map[int][5]int{
			10: {1, 5, 5, 0, 0}, 11: {10, 100, 20, 0, 0}, 12: {10, 30, 10, 0, 0}, 13: {12, 1, 1, 0, 0}, 20: {1, 500, 0, 0, 0},
		})
		m, err := NewCPUMeter(dir, map[string]int{"postgres": 10, "other": 20})
		if err != nil {
			t.Fatal(err)
		}
		a, err := m.Sample()
		if err != nil {
			t.Fatal(err)
		}
		if a.busy != 150 || a.idle != 850 || a.trees["postgres"] != 10+120+40+2 || a.trees["other"] != 500 {
			t.Fatalf("sample = %+v", a)
		}
		// Backend 11 exits and its postmaster reaps it (its time moves to
		// the postmaster's cutime/cstime); backend 12 works on.
		os.RemoveAll(filepath.Join(dir, "11"))
		writeProc(t, dir, "cpu  250 0 100 850 50 0 0 0 0 0", map[int][5]int{
			10: {1, 5, 5, 110, 20}, 12: {10, 80, 10, 0, 0}, 13: {12, 1, 1, 0, 0}, 20: {1, 500, 0, 0, 0},
		})
		b, err := m.Sample()
		if err != nil {
			t.Fatal(err)
		}
		u := Use(a, b, 100) // 200 busy ticks over 100 notifications: 2 ms each
		if u.MachineUS != 20000 || u.IdlePct != 20 {
			t.Errorf("use = %+v, want machine 20000µs, idle 20%%", u)
		}
		if got := u.ProcsUS["postgres"]; got != 1e6/ticksPerSecond*(10+50)/100 {
			t.Errorf("postgres = %vµs, want the 10 ticks reaped + 50 of backend 12 over 100", got)
		}
		if got := u.ProcsUS["other"]; got != 0 {
			t.Errorf("other = %vµs, want 0", got)
		}
		if s := u.String(); !strings.HasPrefix(s, "machine 20000µs (other 0µs, postgres 6000µs), idle 20%") {
			t.Errorf("String() = %q", s)
		}
	})
	t.Run("OKGoneMidway", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeProc(t, dir, "cpu  1 0 1 1 0 0 0 0 0 0", map[int][5]int{10: {1, 1, 1, 0, 0}, 20: {1, 1, 1, 0, 0}})
		m, err := NewCPUMeter(dir, map[string]int{"gateway": 10, "postgres": 20})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := m.Sample()
		os.RemoveAll(filepath.Join(dir, "10")) // killed
		writeProc(t, dir, "cpu  5 0 1 1 0 0 0 0 0 0", map[int][5]int{20: {1, 3, 1, 0, 0}})
		b, err := m.Sample()
		if err != nil {
			t.Fatal(err)
		}
		u := Use(a, b, 1)
		if _, ok := u.ProcsUS["gateway"]; ok || u.ProcsUS["postgres"] != 20000 {
			t.Errorf("use = %+v, want no gateway figure and postgres 20000µs", u)
		}
	})
	t.Run("ErrNoProcess", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeProc(t, dir, "cpu  1 0 1 1 0 0 0 0 0 0", map[int][5]int{10: {1, 1, 1, 0, 0}})
		if _, err := NewCPUMeter(dir, map[string]int{"gateway": 99}); err == nil || !strings.Contains(err.Error(), "99 (gateway)") {
			t.Errorf("NewCPUMeter(gone pid) error %v, want it to name the pid", err)
		}
	})
	t.Run("ErrNoProc", func(t *testing.T) {
		t.Parallel()
		if _, err := NewCPUMeter(filepath.Join(t.TempDir(), "none"), nil); err == nil {
			t.Error("NewCPUMeter(no /proc) = nil error")
		}
	})
}

func TestParseCPUFlag(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		got, err := ParseCPUFlag("gateway=12, postgres=34,")
		if err != nil || len(got) != 2 || got["gateway"] != 12 || got["postgres"] != 34 {
			t.Errorf("ParseCPUFlag = %v, %v", got, err)
		}
	})
	t.Run("ErrBad", func(t *testing.T) {
		t.Parallel()
		for _, s := range []string{"gateway", "=12", "gateway=x", "gateway=0"} {
			if _, err := ParseCPUFlag(s); err == nil {
				t.Errorf("ParseCPUFlag(%q) = nil error", s)
			}
		}
	})
}
