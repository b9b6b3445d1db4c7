"""What every part of the UI shares: background workers, the slot guard and the `Host`
protocol a feature talks to the window through."""
