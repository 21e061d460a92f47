"""Lambda entry points. Each decodes its event, calls one domain function, returns."""
