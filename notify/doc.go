// Package notify tells people about rollouts where they talk: a Slack
// channel (incoming webhook) or any HTTP endpoint taking JSON. One message
// per rollout started, step advanced (off unless asked for), held,
// promoted and rolled back, each with the numbers behind the decision.
//
// The controller calls Notifier.Notify for every event it raises (the
// kube.Config.Notify hook). Notify only enqueues: each receiver has its own
// bounded queue and its own sender, so a receiver that is slow, down or
// hanging delays nothing but its own messages; when its queue is full the
// oldest message is dropped and counted. Delivery is retried with
// exponential backoff on network errors, 5xx and 429 (honouring
// Retry-After), never on other 4xx.
//
// Webhook URLs are secrets (a Slack incoming-webhook URL is a bearer
// credential): they are read from files (a mounted Secret), re-read at every
// delivery so a rotated Secret is picked up, and must never appear in a log
// line, an error or a metric label. Errors from the HTTP client carry the
// URL; they are stripped of it before anything sees them.
package notify
