package browserx

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// treeRSS sums the resident memory of pid and all its descendants, read
// from /proc (Chromium runs a renderer, GPU and network process beside the
// browser). Pages shared between them count once per process, so this is
// an upper bound, as top's RES column summed would be. 0 when /proc is
// missing.
func treeRSS(pid int) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := ppid(p); pp > 0 {
			children[pp] = append(children[pp], p)
		}
	}
	page := int64(os.Getpagesize())
	var total int64
	stack := []int{pid}
	for n := 0; len(stack) > 0 && n < 10000; n++ {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		total += residentPages(p) * page
		stack = append(stack, children[p]...)
	}
	return total
}

// ppid reads the parent pid from /proc/PID/stat; the command name in
// parentheses may hold spaces, so fields are counted after the last ')'.
func ppid(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// residentPages is the second field of /proc/PID/statm.
func residentPages(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "statm"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n
}
