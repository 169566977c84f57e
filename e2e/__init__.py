"""`make e2e`: the Temporal UI of `changeloop dev` checked in a real browser (headless Chromium). Never part of
`make test`; see README "End-to-end UI check"."""
