"""The local backend: projects are folders, commands are subprocesses in their own process
group. The embedded default; needs nothing but Python and the commands themselves."""
