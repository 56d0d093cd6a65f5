"""Generation work on the durable queue (pgqueuer): the engine inside a process, the tasks that
run generations, the signals between the gateway and the workers, and the progress they relay.
"""
