from nvmecontrol.cli.app import run

run()
