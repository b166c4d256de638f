package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canaryd/canaryd/rollout"
)

// list prints every opted-in Deployment of the namespace (or all of them)
// as kubectl get would: one row each, columns padded three spaces apart.
func (a *app) list(ctx context.Context, args []string) error {
	fs := a.flags("list")
	fs.BoolVarP(&a.allNamespaces, "all-namespaces", "A", false, "list across all namespaces")
	rest, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("list takes no arguments (got %q); use status NAME for one Deployment", strings.Join(rest, " "))
	}
	if err := a.connect(); err != nil {
		return err
	}
	ns := a.namespace
	if a.allNamespaces {
		ns = metav1.NamespaceAll
	}
	deps, err := a.client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: rollout.LabelEnabled + "=true"})
	if err != nil {
		return &exitError{code: exitUnknown, err: fmt.Errorf("listing Deployments: %w", err)}
	}
	views := make([]view, 0, len(deps.Items))
	for i := range deps.Items {
		views = append(views, viewOf(&deps.Items[i]))
	}
	if len(views) == 0 {
		where := "in namespace " + ns
		if a.allNamespaces {
			where = "in any namespace"
		}
		fmt.Fprintf(a.out, "No Deployment managed by canaryd %s (label one %s=true).\n", where, rollout.LabelEnabled)
		return nil
	}
	_, err = io.WriteString(a.out, renderList(views, a.allNamespaces, a.now()))
	return err
}

// renderList is the table of list. Rows are sorted by namespace and name.
func renderList(views []view, withNamespace bool, now time.Time) string {
	sort.Slice(views, func(i, j int) bool {
		if views[i].Namespace != views[j].Namespace {
			return views[i].Namespace < views[j].Namespace
		}
		return views[i].Name < views[j].Name
	})
	header := []string{"NAME", "PHASE", "REVISION", "WEIGHT", "STEP", "LAST-CHECK", "AGE"}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	rows := [][]string{header}
	for _, v := range views {
		row := []string{v.Name, phaseText(v), revisionText(v), weightText(v), stepText(v), lastCheckText(v, now), age(now, v.Created)}
		if withNamespace {
			row = append([]string{v.Namespace}, row...)
		}
		rows = append(rows, row)
	}
	return table(rows, "")
}

func revisionText(v view) string {
	switch {
	case !v.Adopted || v.StatusErr != nil:
		return "-"
	case v.Status.Revision != "":
		return v.Status.Revision
	case v.Status.StableRevision != "":
		return v.Status.StableRevision
	}
	return "-"
}

func weightText(v view) string {
	if !v.Adopted || v.StatusErr != nil {
		return "-"
	}
	return percent(v.Status.Weight)
}

func lastCheckText(v view, now time.Time) string {
	if v.StatusErr != nil || v.Status.LastCheck == nil {
		return "-"
	}
	c := v.Status.LastCheck
	return fmt.Sprintf("%s %s", c.Verdict, age(now, c.Time))
}

// table aligns rows into columns three spaces apart, each line prefixed by
// indent; the last column is not padded.
func table(rows [][]string, indent string) string {
	widths := map[int]int{}
	for _, r := range rows {
		for i, c := range r {
			if n := utf8.RuneCountInString(c); n > widths[i] {
				widths[i] = n
			}
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(indent)
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(pad(c, widths[i]+3))
		}
		b.WriteString("\n")
	}
	return b.String()
}
