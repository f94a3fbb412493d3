// Where the room page opens its WebSocket. Replaced at deploy time:
//  - the local emulator serves its own /config.js: { websocketUrl: "ws://127.0.0.1:3000/local" }
//  - the AWS deploy writes { websocketUrl: "wss://<api-id>.execute-api.<region>.amazonaws.com/prod" }
// null means "derive it from the page": ws(s)://<location.host>/. A ?ws=… parameter on the page wins over this.
window.WSCHAT_CONFIG = { websocketUrl: null };
