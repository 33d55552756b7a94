"""AuthThrottle: free failures, doubling delay, ceiling, forgetting."""

from roost.auth import AuthThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock, **kw: float) -> AuthThrottle:
    return AuthThrottle(
        free_failures=2, base_delay_s=1.0, max_delay_s=8.0, clock=clock, **kw
    )


def test_delay_doubles_after_free_failures_up_to_ceiling() -> None:
    throttle = make(FakeClock())
    delays = []
    for _ in range(7):
        delays.append(throttle.delay_s("192.0.2.1"))
        throttle.record_failure("192.0.2.1")
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert throttle.delay_s("192.0.2.2") == 0.0


def test_largest_delay_of_several_keys_applies() -> None:
    throttle = make(FakeClock())
    for _ in range(4):
        throttle.record_failure("192.0.2.1", "user:alice")
    throttle.record_success("192.0.2.1")
    assert throttle.delay_s("192.0.2.1") == 0.0
    assert throttle.delay_s("192.0.2.1", "user:alice") == 4.0


def test_quiet_keys_are_forgotten() -> None:
    clock = FakeClock()
    throttle = make(clock, forget_after_s=60.0)
    for _ in range(5):
        throttle.record_failure("k")
    clock.now += 61
    assert throttle.failures("k") == 0
    assert throttle.delay_s("k") == 0.0


def test_memory_is_bounded() -> None:
    throttle = make(FakeClock(), max_keys=100)
    for n in range(1000):
        throttle.record_failure(f"198.51.100.{n}")
    assert throttle.failures("198.51.100.0") == 0
    assert throttle.failures("198.51.100.999") == 1


def test_long_attack_does_not_overflow() -> None:
    throttle = make(FakeClock())
    for _ in range(2000):
        throttle.record_failure("k")
    assert throttle.delay_s("k") == 8.0
