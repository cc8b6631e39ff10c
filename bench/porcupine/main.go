// Times Porcupine on kv logs (the format of Porcupine's own kv test, as
// checker::porcupine::kv_log writes them): one line per file,
// "NAME VERDICT SECONDS", where VERDICT is valid, invalid or unknown.
//
// Usage: porcupine-kv [-timeout SECONDS] FILE...
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

type input struct {
	op    string // get, put or append
	key   string
	value string
}

// One key's value; the model is partitioned by key, as Porcupine's kv test is.
var kvModel = porcupine.Model{
	PartitionEvent: func(history []porcupine.Event) [][]porcupine.Event {
		byKey := map[string][]porcupine.Event{}
		keyOf := map[int]string{}
		var order []string
		for _, e := range history {
			key := ""
			if e.Kind == porcupine.CallEvent {
				key = e.Value.(input).key
				keyOf[e.Id] = key
			} else {
				key = keyOf[e.Id]
			}
			if _, ok := byKey[key]; !ok {
				order = append(order, key)
			}
			byKey[key] = append(byKey[key], e)
		}
		out := make([][]porcupine.Event, 0, len(order))
		for _, k := range order {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		s := state.(string)
		i := in.(input)
		switch i.op {
		case "get":
			return out.(string) == s, s
		case "put":
			return true, i.value
		default:
			return true, s + i.value
		}
	},
	Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
}

var line = regexp.MustCompile(`^\{:process (\d+), :type :(invoke|ok), :f :(get|put|append), :key "([^"]*)", :value (nil|"([^"]*)")\}$`)

func read(path string) ([]porcupine.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []porcupine.Event
	open := map[int]int{}
	id := 0
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<26)
	for n := 1; scanner.Scan(); n++ {
		m := line.FindStringSubmatch(scanner.Text())
		if m == nil {
			return nil, fmt.Errorf("%s:%d: not a kv log line", path, n)
		}
		process, _ := strconv.Atoi(m[1])
		if m[2] == "invoke" {
			events = append(events, porcupine.Event{ClientId: process, Kind: porcupine.CallEvent, Value: input{m[3], m[4], m[6]}, Id: id})
			open[process] = id
			id++
		} else {
			call, ok := open[process]
			if !ok {
				return nil, fmt.Errorf("%s:%d: a completion with no invocation", path, n)
			}
			delete(open, process)
			events = append(events, porcupine.Event{ClientId: process, Kind: porcupine.ReturnEvent, Value: m[6], Id: call})
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	// Never completed: returns at the end, as in Porcupine's kv test. Only
	// puts and appends are left open, and their output is not looked at.
	for process, call := range open {
		events = append(events, porcupine.Event{ClientId: process, Kind: porcupine.ReturnEvent, Value: "", Id: call})
	}
	return events, nil
}

func main() {
	timeout := flag.Float64("timeout", 60, "seconds per history before the verdict is unknown")
	flag.Parse()
	for _, path := range flag.Args() {
		events, err := read(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(2)
		}
		start := time.Now()
		result := porcupine.CheckEventsTimeout(kvModel, events, time.Duration(*timeout*float64(time.Second)))
		elapsed := time.Since(start).Seconds()
		verdict := map[porcupine.CheckResult]string{porcupine.Ok: "valid", porcupine.Illegal: "invalid", porcupine.Unknown: "unknown"}[result]
		fmt.Printf("%s %s %.6f\n", strings.TrimSuffix(filepath.Base(path), ".txt"), verdict, elapsed)
	}
}
