package procmgr_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

func baseStatus() procmgr.Status {
	return procmgr.Status{
		ID: "wp-a", State: procmgr.StateRunning, ActiveState: "active", SubState: "running",
		MainPID: 100, Restarts: 1, LastExit: &procmgr.ExitInfo{Result: "signal", Signal: "KILL"},
		MemoryBytes: 1 << 20, CPUUsage: time.Second, Tasks: 3, Since: time.Unix(1, 0),
		Limits:  procmgr.Limits{MemoryMax: 64 << 20, CPUQuota: 50, TasksMax: 32},
		Backend: "test", Notes: []string{"memory_max: not enforced"}, Seq: 1,
	}
}

// Every field of Status but Since and Seq counts as a change, including
// fields added after this test was written: it changes each one in turn.
func TestChangedComparesEveryFieldThatMatters(t *testing.T) {
	a := baseStatus()
	if procmgr.Changed(a, baseStatus()) {
		t.Fatal("Changed on two equal statuses")
	}
	typ := reflect.TypeOf(a)
	for i := range typ.NumField() {
		f := typ.Field(i)
		b := baseStatus()
		v := reflect.ValueOf(&b).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "-other")
		case reflect.Int, reflect.Int64:
			v.SetInt(v.Int() + 1)
		case reflect.Uint64:
			v.SetUint(v.Uint() + 1)
		case reflect.Pointer:
			v.Set(reflect.ValueOf(&procmgr.ExitInfo{Result: "exit-code", Code: 1}))
		case reflect.Slice:
			v.Set(reflect.Append(v, reflect.ValueOf("another note")))
		case reflect.Struct:
			if f.Type == reflect.TypeOf(time.Time{}) {
				v.Set(reflect.ValueOf(time.Unix(2, 0)))
			} else {
				v.Set(reflect.ValueOf(procmgr.Limits{MemoryMax: 128 << 20, CPUQuota: 50, TasksMax: 32}))
			}
		default:
			t.Fatalf("field %s of kind %s: teach this test to change it", f.Name, v.Kind())
		}
		want := f.Name != "Since" && f.Name != "Seq"
		if got := procmgr.Changed(a, b); got != want {
			t.Errorf("Changed with only %s different = %v, want %v", f.Name, got, want)
		}
	}
	// A LastExit that is equal but not the same pointer is no change.
	b := baseStatus()
	b.LastExit = &procmgr.ExitInfo{Result: "signal", Signal: "KILL"}
	if procmgr.Changed(a, b) {
		t.Error("Changed on an equal LastExit at another address")
	}
}

func subscribeFeed(t *testing.T, f *procmgr.Feed) <-chan procmgr.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := f.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// next returns the next event, or fails if none is queued.
func next(t *testing.T, ch <-chan procmgr.Event, what string) procmgr.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	default:
		t.Fatalf("%s: no event published", what)
		return procmgr.Event{}
	}
}

func none(t *testing.T, ch <-chan procmgr.Event, what string) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("%s: published %+v", what, ev.Status)
	default:
	}
}

func TestFeedPublishesOnlyChanges(t *testing.T) {
	var f procmgr.Feed
	ch := subscribeFeed(t, &f)
	st := f.Stamp(baseStatus())
	if !f.Publish(st) || next(t, ch, "first status").Status.Seq != st.Seq {
		t.Fatal("the first status of an instance was not published")
	}

	same := f.Stamp(baseStatus())
	same.Since = time.Unix(5, 0)
	if f.Publish(same) {
		t.Error("Publish of an identical status (new Seq and Since) reported true")
	}
	none(t, ch, "identical status")

	notes := f.Stamp(baseStatus())
	notes.Notes = []string{"cpu_quota: not enforced"}
	if !f.Publish(notes) || !reflect.DeepEqual(next(t, ch, "Notes-only change").Status.Notes, notes.Notes) {
		t.Error("a change of Notes alone was not published")
	}

	sub := f.Stamp(notes)
	sub.SubState = "reload"
	if !f.Publish(sub) || next(t, ch, "SubState-only change").Status.SubState != "reload" {
		t.Error("a change of SubState alone was not published")
	}

	// A status stamped before the last one published (an action's read
	// that a signal overtook) is dropped.
	older := f.Stamp(sub)
	newer := f.Stamp(sub)
	newer.MainPID = 200
	older.MainPID = 300
	f.Publish(newer)
	next(t, ch, "newer status")
	if f.Publish(older) {
		t.Error("a status older than the last published went out")
	}
	none(t, ch, "older status")

	// Gone publishes absent and forgets: the same status goes out again.
	f.Gone(st.ID, "test")
	if ev := next(t, ch, "gone"); ev.Status.State != procmgr.StateAbsent || ev.Status.ID != st.ID || ev.Status.Seq != 0 {
		t.Errorf("gone published %+v", ev.Status)
	}
	if !f.Publish(f.Stamp(newer)) {
		t.Error("after Gone, a status equal to the one before was not published")
	}
	next(t, ch, "after gone")

	// Forget publishes nothing, and the next status goes out whatever it is.
	f.Forget(st.ID)
	none(t, ch, "forget")
	if !f.Publish(f.Stamp(newer)) {
		t.Error("after Forget, an unchanged status was not published")
	}
	next(t, ch, "after forget")

	f.Close()
	if _, ok := <-ch; ok {
		t.Error("a subscriber's channel still open after Close")
	}
	if _, err := f.Subscribe(context.Background()); !errors.Is(err, procmgr.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

// A subscriber that falls behind is told so: the events after the gap are
// marked Lost. One that keeps up never sees the mark.
func TestFeedMarksEventsAfterAGap(t *testing.T) {
	var f procmgr.Feed
	slow := subscribeFeed(t, &f)
	fast := subscribeFeed(t, &f)
	const extra = 5
	for i := range procmgr.SubscriberBuffer + extra {
		st := f.Stamp(baseStatus())
		st.MainPID = 1000 + i
		f.Publish(st)
		if ev := <-fast; ev.Lost {
			t.Fatalf("a subscriber that keeps up got an event marked Lost (%d)", i)
		}
	}
	var lost, kept int
	var last procmgr.Event
	for len(slow) > 0 {
		last = <-slow
		kept++
		if last.Lost {
			lost++
		}
	}
	if kept != procmgr.SubscriberBuffer || lost != extra || !last.Lost || last.Status.MainPID != 1000+procmgr.SubscriberBuffer+extra-1 {
		t.Errorf("slow subscriber: %d events, %d marked Lost, last %+v; want %d, %d, the newest marked",
			kept, lost, last, procmgr.SubscriberBuffer, extra)
	}
}
