// Send one message with nodemailer and print what happened as one JSON line.
//   node send.mjs '<json options>'
// options: host, port, secure (implicit TLS, 465) or requireTLS (STARTTLS, 587), user, pass,
// method (PLAIN | LOGIN), ca (PEM path), from, to, subject, text, html, attachments (base64).
import fs from "node:fs";
import nodemailer from "nodemailer";

const o = JSON.parse(process.argv[2]);
const transport = nodemailer.createTransport({
  host: o.host,
  port: o.port,
  secure: o.secure,
  requireTLS: !o.secure,
  name: "node-client.test",
  auth: { user: o.user, pass: o.pass },
  authMethod: o.method,
  tls: { ca: [fs.readFileSync(o.ca)], servername: "relay.test" },
  connectionTimeout: 10000,
  greetingTimeout: 10000,
  socketTimeout: 10000,
});
try {
  const info = await transport.sendMail({
    from: o.from,
    to: o.to,
    subject: o.subject,
    text: o.text,
    html: o.html,
    headers: { "X-Helo-Tag": "nodemailer" },
    attachments: (o.attachments || []).map((a) => ({
      filename: a.filename,
      content: Buffer.from(a.base64, "base64"),
    })),
  });
  console.log(JSON.stringify({ ok: true, response: info.response, accepted: info.accepted,
                               rejected: info.rejected }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, response: err.response || null, code: err.code,
                               responseCode: err.responseCode || null }));
  process.exitCode = 1;
}
