/*
 * changeloop: send change event. Outbound Business Rule on change_request.
 *
 * @name       changeloop: send change event
 * @table      change_request
 * @when       after
 * @order      100
 * @insert     false
 * @update     true
 * @condition  current.state.changesTo('4') || current.on_hold.changes() || current.start_date.changes() || current.end_date.changes()
 *
 * Tells changeloop that a change was canceled, put on hold or released, or rescheduled (planned start or end
 * moved), so a running workflow stops, pauses or waits for the new window without waiting for its next
 * re-read of the ticket. changeloop re-reads the change before it acts on the event.
 *
 * POST {x_changeloop.shim_url}/api/servicenow/change/event
 * Authorization: Bearer {x_changeloop.webhook_token}   (the `servicenow` principal: scope change:webhook)
 *
 * The JSON body has exactly these fields (the sandbox emulator sends the same set:
 * sandbox/outbound_rules.py), all stored values:
 *   number, sys_id, state, on_hold, on_hold_reason, start_date, end_date
 * on_hold is "true" or "false"; start_date and end_date are "YYYY-MM-DD hh:mm:ss" in UTC (or empty).
 */
(function executeRule(current, previous /*null when async*/) {
    var shimUrl = gs.getProperty('x_changeloop.shim_url', '');
    var token = gs.getProperty('x_changeloop.webhook_token', '');
    if (!shimUrl || !token) {
        gs.warn('changeloop: x_changeloop.shim_url or x_changeloop.webhook_token is not set; ' +
            current.getValue('number') + ' was not sent');
        return;
    }

    var body = {};
    body.number = current.getValue('number') || '';
    body.sys_id = current.getUniqueValue();
    body.state = current.getValue('state') || '';
    body.on_hold = current.on_hold.toString() == 'true' ? 'true' : 'false';
    body.on_hold_reason = current.getValue('on_hold_reason') || '';
    body.start_date = current.getValue('start_date') || '';
    body.end_date = current.getValue('end_date') || '';

    try {
        var request = new sn_ws.RESTMessageV2('changeloop shim', 'post');
        request.setEndpoint(shimUrl + '/api/servicenow/change/event');
        request.setHttpMethod('POST');
        request.setRequestHeader('Content-Type', 'application/json');
        request.setRequestHeader('Authorization', 'Bearer ' + token);
        request.setRequestBody(JSON.stringify(body));
        request.executeAsync();
    } catch (e) {
        gs.error('changeloop: could not send the event of ' + body.number + ': ' + e.message);
    }
})(current, previous);
