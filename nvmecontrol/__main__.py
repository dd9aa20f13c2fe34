from nvmecontrol.cli.entry import run

run()
