"""What the test suites share: saga inputs (`payloads`), saga types served by test
orchestrators (`policy_sagas`, `lock_sagas`) and starting a saga over the API
(`starting`). Unit, integration, end-to-end and web tests import from here, never
from one another."""
