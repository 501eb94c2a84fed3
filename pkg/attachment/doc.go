// Package attachment decides; it never touches the world. It turns a pod's Multus
// network-selection annotation into the attachments the pod should have (Desired), reads what
// the pod has from its network-status and netplug's own records (Current), and computes the
// steps that turn one into the other (Diff). Everything here is pure and table-tested.
package attachment
