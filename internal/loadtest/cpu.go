package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// On a machine the load saturates, throughput is the inverse of the CPU a
// notification costs, so each pass can also say where that CPU went: the
// machine's busy time, and that of named process trees (-cpu), read from
// Linux's /proc at the pass's start and end.

// ticksPerSecond is Linux's USER_HZ, the unit of /proc's CPU times: 100 on
// every architecture Go supports.
const ticksPerSecond = 100

// CPUUse is what a pass cost in CPU time, per acknowledged notification.
type CPUUse struct {
	MachineUS float64            `json:"machine_us"` // busy time of all CPUs
	IdlePct   float64            `json:"idle_pct"`   // share of the CPUs' time left idle during the pass
	ProcsUS   map[string]float64 `json:"procs_us"`   // each -cpu process tree, and loadgen itself
}

// CPUMeter samples CPU time from /proc.
type CPUMeter struct {
	proc  string         // /proc
	trees map[string]int // name: root pid
}

// CPUSample is CPU time in ticks at one moment.
type CPUSample struct {
	busy, idle uint64
	trees      map[string]uint64
}

// ParseCPUFlag parses -cpu: "name=pid,name=pid".
func ParseCPUFlag(s string) (map[string]int, error) {
	trees := map[string]int{}
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, pidText, ok := strings.Cut(part, "=")
		pid, err := strconv.Atoi(pidText)
		if !ok || name == "" || err != nil || pid <= 0 {
			return nil, fmt.Errorf("-cpu: %q is not name=pid", part)
		}
		trees[name] = pid
	}
	return trees, nil
}

// NewCPUMeter returns a meter of the machine and of the process trees
// rooted at trees' pids, reading proc (/proc); it fails where proc cannot be
// read (not Linux) or a pid is not running.
func NewCPUMeter(proc string, trees map[string]int) (*CPUMeter, error) {
	m := &CPUMeter{proc: proc, trees: trees}
	s, err := m.Sample()
	if err != nil {
		return nil, fmt.Errorf("-cpu: %w", err)
	}
	for name, pid := range trees {
		if _, ok := s.trees[name]; !ok {
			return nil, fmt.Errorf("-cpu: process %d (%s) not found", pid, name)
		}
	}
	return m, nil
}

// Sample reads the machine's busy and idle ticks and each tree's ticks. A
// tree's time is that of its live processes, each with the time of the
// children it has reaped: a Postgres backend that exits is counted in its
// postmaster's. A tree whose root is gone (a gateway killed mid-pass) is
// left out, and so has no figure for the pass.
func (m *CPUMeter) Sample() (CPUSample, error) {
	var s CPUSample
	stat, err := os.ReadFile(filepath.Join(m.proc, "stat"))
	if err != nil {
		return s, err
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return s, errors.New("unexpected first line of /proc/stat")
	}
	var v [8]uint64 // user nice system idle iowait irq softirq steal
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	s.busy, s.idle = v[0]+v[1]+v[2]+v[5]+v[6], v[3]+v[4]

	procs, err := m.processes()
	if err != nil {
		return s, err
	}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	s.trees = map[string]uint64{}
	for name, root := range m.trees {
		if _, ok := procs[root]; !ok {
			continue
		}
		var total uint64
		for todo := []int{root}; len(todo) > 0; {
			pid := todo[len(todo)-1]
			todo = append(todo[:len(todo)-1], children[pid]...)
			total += procs[pid].ticks
		}
		s.trees[name] = total
	}
	return s, nil
}

type procTicks struct {
	ppid  int
	ticks uint64 // utime+stime+cutime+cstime
}

// processes reads every process's parent and CPU ticks.
func (m *CPUMeter) processes() (map[int]procTicks, error) {
	dirs, err := os.ReadDir(m.proc)
	if err != nil {
		return nil, err
	}
	out := make(map[int]procTicks, len(dirs))
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.proc, d.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		if p, ok := parseProcStat(b); ok {
			out[pid] = p
		}
	}
	return out, nil
}

// parseProcStat reads ppid, utime, stime, cutime and cstime from a
// /proc/PID/stat line; the command name before them, in parentheses, may
// hold spaces and parentheses itself.
func parseProcStat(b []byte) (procTicks, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procTicks{}, false
	}
	f := strings.Fields(string(b[i+1:])) // from field 3, state
	if len(f) < 15 {
		return procTicks{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procTicks{}, false
	}
	var p procTicks
	p.ppid = ppid
	for _, k := range []int{11, 12, 13, 14} { // fields 14-17
		n, err := strconv.ParseUint(f[k], 10, 64)
		if err != nil {
			return procTicks{}, false
		}
		p.ticks += n
	}
	return p, true
}

// Use is what happened between a and b, per acknowledged notification.
func Use(a, b CPUSample, acked int) *CPUUse {
	if acked == 0 {
		return nil
	}
	perAck := func(ticks uint64) float64 {
		return float64(ticks) * 1e6 / ticksPerSecond / float64(acked)
	}
	u := &CPUUse{MachineUS: perAck(b.busy - a.busy), ProcsUS: map[string]float64{}}
	if all := (b.busy - a.busy) + (b.idle - a.idle); all > 0 {
		u.IdlePct = 100 * float64(b.idle-a.idle) / float64(all)
	}
	for name, t := range b.trees {
		if t0, ok := a.trees[name]; ok && t >= t0 {
			u.ProcsUS[name] = perAck(t - t0)
		}
	}
	return u
}

// String is the CPU use for people: "machine 182µs (gateway 94µs, ...), idle 4%".
func (u *CPUUse) String() string {
	names := make([]string, 0, len(u.ProcsUS))
	for name := range u.ProcsUS {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.0fµs", name, u.ProcsUS[name])
	}
	return fmt.Sprintf("machine %.0fµs (%s), idle %.0f%%", u.MachineUS, strings.Join(parts, ", "), u.IdlePct)
}
