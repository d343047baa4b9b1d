import requests

from test.conftest import free_port, function_config


def test_hello_world_over_http(start_processor):
    port = free_port()
    proc = start_processor(function_config("hello:handler", port=port))
    response = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.status_code == 200
    assert response.text == "hello"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert proc.stop() == 0
