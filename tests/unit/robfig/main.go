// Command robfig prints the fire times robfig/cron v3 (the CronJob controller's parser)
// computes for the cases in cases.json, as robfig_fire_times.jsonl beside it. The unit test
// tests/unit/test_schedule_robfig.py compares bgjobs.schedule.next_fire_times with them.
//
//	cd tests/unit/robfig && go run . > robfig_fire_times.jsonl
package main

import (
	"encoding/json"
	"os"
	"time"

	"github.com/robfig/cron/v3"
)

type testCase struct {
	Cron  string `json:"cron"`
	Zone  string `json:"zone"`
	After string `json:"after"`
	Count int    `json:"count"`
}

type result struct {
	testCase
	Fires []string `json:"fires"`
}

func main() {
	raw, err := os.ReadFile("cases.json")
	if err != nil {
		panic(err)
	}
	var cases []testCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		panic(err)
	}
	out := json.NewEncoder(os.Stdout) // one case per line
	for _, c := range cases {
		spec := c.Cron
		if c.Zone != "" {
			spec = "TZ=" + c.Zone + " " + spec // as the CronJob controller does with spec.timeZone
		}
		schedule, err := cron.ParseStandard(spec)
		if err != nil {
			panic(err)
		}
		t, err := time.Parse(time.RFC3339, c.After)
		if err != nil {
			panic(err)
		}
		fires := []string{}
		for len(fires) < c.Count {
			t = schedule.Next(t)
			if t.IsZero() {
				break
			}
			fires = append(fires, t.UTC().Format(time.RFC3339))
		}
		if err := out.Encode(result{c, fires}); err != nil {
			panic(err)
		}
	}
}
