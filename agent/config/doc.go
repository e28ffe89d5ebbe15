// Package config is the agent's configuration schema and loader: defaults <
// YAML file < LANMESH_* env < flags, merged with koanf. Validation names the
// key and the source that set it. It reads config; it does not apply it.
package config
