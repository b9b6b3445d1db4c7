"""PACS in the viewer: File ▸ PACS Servers… and Query/Retrieve…, Annotate ▸ Send to PACS…
and AI ▸ Send Results to PACS… (`PacsFeature` makes the actions; the shell places them).

Every network call runs in a worker (`Host.pool`): the window never waits on a server. The
dialogs take the PACS client (`medviewer.pacs.client`) and server settings
(`medviewer.pacs.servers`) as constructor arguments, so tests can hand in fakes.
"""
