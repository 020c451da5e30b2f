// A loopback OpenAI-compatible server for tests (like pythonexec::testing::MockOpenAi):
// plain JSON, or server-sent events when the request says "stream": true.

import http from "node:http";

export const REPLY = "Hello from the loopback server, word by word.";

export async function startMock() {
  const bodies = [];
  const server = http.createServer((req, res) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => {
      if (req.method === "GET" && req.url.endsWith("/models")) {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ object: "list", data: [{ id: "gpt-4o-mini", object: "model" }] }));
        return;
      }
      const body = JSON.parse(data || "{}");
      bodies.push(body);
      const base = { id: "chatcmpl-mock", created: 1700000000, model: body.model };
      if (!body.stream) {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(
          JSON.stringify({
            ...base,
            object: "chat.completion",
            choices: [{ index: 0, message: { role: "assistant", content: REPLY }, finish_reason: "stop" }],
            usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
          }),
        );
        return;
      }
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      const chunk = (delta, finish = null) =>
        `data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: "assistant", content: "" }));
      const words = REPLY.split(/(?<= )/);
      for (const w of words) res.write(chunk({ content: w }));
      res.write(chunk({}, "stop"));
      res.end("data: [DONE]\n\n");
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    bodies,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
