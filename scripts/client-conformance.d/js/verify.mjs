// Verifies the webhook deliveries that webhook_deliveries.py received (raw headers and bodies)
// with the Standard Webhooks reference library for JavaScript (npm `standardwebhooks`, pinned
// in package-lock.json); see scripts/client-conformance.
//
// Usage: node verify.mjs DELIVERIES.json   Exit status 0 when every check passed.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const { secret, deliveries } = JSON.parse(readFileSync(process.argv[2], "utf8"));
let passed = 0;
const failures = [];
const check = (condition, what) => (condition ? passed++ : failures.push(what));
const verifies = (key, body, headers) => {
  try {
    new Webhook(key).verify(body, headers);
    return true;
  } catch {
    return false;
  }
};

check(deliveries.length > 0, "no delivery to verify");
const other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
for (const { headers, body } of deliveries) {
  const id = headers["webhook-id"];
  check(verifies(secret, body, headers), `delivery ${id} did not verify (JavaScript library)`);
  check(!verifies(secret, body + " ", headers), `delivery ${id}: a changed body verified`);
  check(!verifies(other, body, headers), `delivery ${id}: another secret verified`);
  // The library returns the parsed payload: the event whose id is the webhook-id.
  check(new Webhook(secret).verify(body, headers).id === id, `delivery ${id}: payload id`);
}
console.log(
  `webhook deliveries (JavaScript standardwebhooks): ${passed} passed, ${failures.length} failed`,
);
for (const failure of failures) console.error(`  FAILED: ${failure}`);
process.exit(failures.length ? 1 : 0);
